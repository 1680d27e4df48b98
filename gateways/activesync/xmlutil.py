"""Building and reading the XML trees of commands (the conventions of wbxml.py: the namespace
is the code page's name, ``bytes`` text is OPAQUE)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Optional

from .wbxml import qname as q


def element(page: str, name: str, *children, text=None):
    el = ET.Element(q(page, name))
    if text is not None:
        el.text = text if isinstance(text, (bytes, str)) else str(text)
    for child in children:
        if child is not None:
            el.append(child)
    return el


def sub(parent, page: str, name: str, text=None):
    el = ET.SubElement(parent, q(page, name))
    if text is not None:
        el.text = text if isinstance(text, (bytes, str)) else str(text)
    return el


def text(el, page: str, name: str) -> Optional[str]:
    """The text of ``el``'s child ``page:name`` as a string ("" when empty), None without one."""
    found = el.find(q(page, name)) if el is not None else None
    if found is None:
        return None
    value = found.text
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
