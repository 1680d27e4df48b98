"""STYLE habit 1, checked by reading the code: what the modules of a gateway import."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterable, Iterator, Tuple

#: packages whose submodules are named in full for ``from <package> import <module>``
_PACKAGES = ("store", "gateways", "auth")


def imported_names(paths: Iterable[Path]) -> Iterator[Tuple[str, str]]:
    """(file name, module) for every absolute import in the files at ``paths``; ``from store
    import errors`` gives ``store.errors``, ``from gateways.smtpwire import X`` gives
    ``gateways.smtpwire``."""
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in _PACKAGES:
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                yield path.name, name


def package_files(package) -> list:
    """The modules of an imported package."""
    return sorted(Path(package.__file__).parent.glob("*.py"))
