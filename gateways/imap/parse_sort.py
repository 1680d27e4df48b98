"""Grammar of the search-result extensions: ESEARCH ``RETURN (...)`` (RFC 4731 §3, RFC 4466 §2.6)
with SEARCHRES ``SAVE`` (RFC 5182 §3), SORT (RFC 5256 §4) with ESORT's ``RETURN`` (RFC 5267 §3),
THREAD (RFC 5256 §4).  Pure like parser.py, which wires these into its command table; the
``$`` sequence set itself is read by :meth:`Reader.seq_set` (searchres.py)."""

from __future__ import annotations

from .reader import ParseError, Reader
from .search import parse_search_keys
from .sorting import SORT_KEYS
from .thread import ALGORITHMS

#: RFC 4731 §3.1 result options, and RFC 5182's SAVE
RETURN_OPTIONS = ("MIN", "MAX", "ALL", "COUNT", "SAVE")


def maybe_return(r: Reader):
    """``RETURN (opts) SP`` when present: the options as a frozenset (empty for ``RETURN ()``,
    which means ALL, RFC 4731 §3.1); None when absent."""
    if r.data[r.pos:r.pos + 7].upper() != b"RETURN ":
        return None
    r.pos += 7

    def option(rr: Reader) -> str:
        name = rr.atom().upper()
        if name not in RETURN_OPTIONS:
            raise rr.error("unknown RETURN option %s" % name[:30])
        return name

    opts = frozenset(r.paren_list(option))
    r.sp()
    return opts


def charset(r: Reader, required: bool) -> str:
    """``[CHARSET SP] astring``: SEARCH's optional charset, SORT's and THREAD's mandatory one."""
    if not required:
        if r.data[r.pos:r.pos + 8].upper() != b"CHARSET ":
            return "UTF-8"
        r.pos += 8
    name = r.astring().decode("ascii", "replace").upper()
    if name not in ("UTF-8", "US-ASCII", "UTF8"):
        raise ParseError("unsupported charset", r.tag, "BADCHARSET (UTF-8 US-ASCII)")
    r.sp()
    return name


def _sort_criterion(r: Reader) -> tuple:
    name = r.atom().upper()
    reverse = False
    if name == "REVERSE":
        r.sp()
        reverse = True
        name = r.atom().upper()
    if name not in SORT_KEYS:
        raise r.error("unknown sort key %s" % name[:30])
    return (reverse, name)


def sort_args(r: Reader, args: dict) -> None:
    """SORT [RETURN (...)] (criteria) charset keys."""
    r.sp()
    args["returns"] = maybe_return(r)
    criteria = r.paren_list(_sort_criterion)
    if not criteria:
        raise r.error("SORT needs at least one sort criterion")
    args["sort"] = criteria
    r.sp()
    args["charset"] = charset(r, True)
    args["criteria"] = parse_search_keys(r)


def thread_args(r: Reader, args: dict) -> None:
    """THREAD algorithm charset keys."""
    r.sp()
    algorithm = r.atom().upper()
    if algorithm not in ALGORITHMS:
        raise r.error("unknown THREAD algorithm %s" % algorithm[:30])
    args["algorithm"] = algorithm
    r.sp()
    args["charset"] = charset(r, True)
    args["criteria"] = parse_search_keys(r)
