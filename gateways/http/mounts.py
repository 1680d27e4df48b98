"""The mount table: which path prefix goes to which application, and the redirects.

A table is a sequence of :class:`App`, :class:`Mount` and :class:`Redirect` entries; the
service builds it (gateways/service.py ``http_mounts``) from what each protocol package
exposes, so no protocol package knows the front door and the front door knows no protocol.

Paths are matched by whole segments, the way Twisted Web walks its resource tree: ``/dav/``
takes ``/dav``, ``/dav/`` and everything below; ``/.well-known/caldav`` takes that name and
everything below it; ``/`` takes exactly the root.  A path no entry takes is 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from twisted.web import pages, resource


@dataclass(frozen=True)
class App:
    """A WSGI application under ``prefix``; with ``login`` only for accounts the portal let in;
    with ``fold_case`` its path matches in any letter case (Microsoft's clients write
    ``/Autodiscover/Autodiscover.xml``, ``/autodiscover/...``)."""
    prefix: str
    app: Callable
    login: bool = True
    fold_case: bool = False


@dataclass(frozen=True)
class Mount:
    """A Twisted Web resource (made leaf or not, as it likes) under ``prefix`` (``fold_case``:
    as for :class:`App`).  With ``login``, ``resource`` is not a resource but an object whose
    ``serve(request, account)`` answers for the account the portal let in (and whose
    ``login_name(login)``, if it has one, maps the login a client sends); ``plaintext``
    replaces ``[http] allow_plaintext_auth`` for it."""
    prefix: str
    resource: Any
    fold_case: bool = False
    login: bool = False
    plaintext: Optional[str] = None


@dataclass(frozen=True)
class Redirect:
    """A permanent redirect of ``path`` (and below) to ``location``, for every method."""
    path: str
    location: str


class Moved(resource.Resource):
    """A permanent redirect for every method (PROPFIND included)."""
    isLeaf = True

    def __init__(self, location: bytes):
        super().__init__()
        self.location = location

    def render(self, request):
        request.setResponseCode(301)
        request.setHeader(b"Location", self.location)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"Moved to " + self.location + b"\n"


class NotFound(resource.Resource):
    isLeaf = True

    def render(self, request):
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"Not found\n"


class _Branch(resource.Resource):
    """A path segment on the way to mounted entries; its other names are not found (Twisted's
    HTML 404 page at the root, :class:`NotFound` further down)."""

    def __init__(self, missing: Optional[Callable[[], resource.Resource]]):
        super().__init__()
        self._missing = missing
        self.folded: dict = {}  # lower-case name -> child, for mounts matched in any case

    def getChild(self, name, request):
        child = self.folded.get(name.lower())
        if child is not None:
            return child
        if self._missing is None:
            return pages.notFound()  # what Resource.getChild gives, HTML-escaped (Twisted >= 22.10)
        return self._missing()

    def render(self, request):
        """The segment itself (``/.well-known/autoconfig``) is not found either, not a 405."""
        return self.getChild(b"", request).render(request)


def segments(path: str) -> list:
    """``"/dav/"`` -> ``[b"dav"]``, ``"/.well-known/caldav"`` -> ``[b".well-known", b"caldav"]``,
    ``"/"`` -> ``[b""]`` (the root itself)."""
    if not path.startswith("/"):
        raise ValueError(f"mount path {path!r} must start with /")
    return [s.encode("utf-8") for s in path[1:].rstrip("/").split("/")]


def build_root(table: Iterable, app_resource: Callable[[App], resource.Resource],
               login_resource: Optional[Callable[[Mount], resource.Resource]] = None) -> resource.Resource:
    """The resource tree for ``table``; ``app_resource`` turns an :class:`App` into a resource,
    ``login_resource`` a :class:`Mount` with ``login``.  Two entries on one path, or one below
    another's, is a ValueError."""
    root = _Branch(None)
    taken: dict = {}
    for entry in table:
        if isinstance(entry, App):
            path, leaf = entry.prefix, app_resource(entry)
        elif isinstance(entry, Mount):
            path, leaf = entry.prefix, login_resource(entry) if entry.login else entry.resource
        elif isinstance(entry, Redirect):
            path, leaf = entry.path, Moved(entry.location.encode("utf-8"))
        else:
            raise TypeError(f"not a mount: {entry!r}")
        fold = getattr(entry, "fold_case", False)
        names = segments(path.lower() if fold else path)
        for n in range(1, len(names) + 1):
            other = taken.get(tuple(names[:n]))
            if other is not None:
                raise ValueError(f"mount {path!r} clashes with {other!r}")
        if any(key[:len(names)] == tuple(names) for key in taken):
            raise ValueError(f"mount {path!r} clashes with a mount below it")
        taken[tuple(names)] = path
        node = root
        for name in names[:-1]:
            child = node.children.get(name)
            if child is None:
                child = _Branch(NotFound)
                node.putChild(name, child)
            if fold:
                node.folded[name] = child
            node = child
        node.putChild(names[-1], leaf)
        if fold:
            node.folded[names[-1]] = leaf
    return root
