"""Fast paths for three vobject functions that dominate a CalDAV PUT's CPU time.

Radicale parses every PUT body with vobject and serializes it again (for the ETag and the
stored text); profiled on the DAV benchmark's events, about a third of that time went to
three helpers that work one character at a time:

* ``ContentLine.__setattr__`` checks every attribute name for the ``*_param`` /
  ``*_paramlist`` spellings and looks for a property on the class, ~500 times per event,
  although vobject itself only sets a handful of plain instance attributes;
* ``icalendar.stringToTextValues`` unescapes TEXT values with a character state machine even
  when there is nothing to unescape;
* ``base.foldOneLine`` folds long lines one character at a time.

Each replacement takes a shortcut only where its result is the same as the original's, and
otherwise calls the original: ``tests/gateways/dav/test_vobject_speed.py`` compares them on
generated and real input.  vobject is at 0.9.9, its latest release; :func:`install` checks
that the functions it replaces are still the ones it knows, and leaves vobject alone if not.
"""

from __future__ import annotations

import logging

from vobject import base, icalendar

log = logging.getLogger("haven.dav")

#: attributes vobject's own code sets on content lines; none is a property of ContentLine
_PLAIN_ATTRIBUTES = frozenset({"name", "encoded", "params", "singletonparams", "isNative", "lineNumber",
                               "value", "behavior", "parentBehavior", "group"})

_ContentLine = base.ContentLine
_original_setattr = base.ContentLine.__setattr__
_original_text_values = icalendar.stringToTextValues
_original_fold = base.foldOneLine


def fast_setattr(self, name, value):
    # subclasses (none in vobject; Radicale's e-mail hook has some) may define properties
    if name in _PLAIN_ATTRIBUTES and self.__class__ is _ContentLine:
        object.__setattr__(self, name, value)
    else:
        _original_setattr(self, name, value)


def fast_text_values(s, listSeparator=",", charList=None, strict=False):
    """Without a backslash (and without the separator) the state machine returns ``[s]``."""
    if isinstance(s, str) and "\\" not in s and (listSeparator is None or listSeparator not in s):
        return [s]
    return _original_text_values(s, listSeparator, charList, strict)


def fast_fold(outbuf, input, lineLength=75):
    """ASCII lines: the original writes ``lineLength`` octets on the first line and
    ``lineLength - 1`` after each "CRLF SP"; the same, in slices."""
    if not isinstance(input, str) or len(input) < lineLength or not input.isascii() or lineLength < 2:
        return _original_fold(outbuf, input, lineLength)
    step = lineLength - 1
    parts = [input[:lineLength]]
    parts += [input[i:i + step] for i in range(lineLength, len(input), step)]
    text = "\r\n ".join(parts) + "\r\n"
    try:
        outbuf.write(text.encode("ascii"))
    except TypeError:
        outbuf.write(text)  # a text buffer, as the original falls back to


def install() -> None:
    """Install the fast paths (idempotent)."""
    if getattr(base, "_haven_fast_paths", False):
        return
    known = (_original_setattr.__qualname__ == "ContentLine.__setattr__"
             and _original_text_values.__name__ == "stringToTextValues"
             and _original_fold.__name__ == "foldOneLine")
    if not known:
        log.warning("vobject's internals changed; CalDAV runs without Haven's vobject fast paths")
        return
    base.ContentLine.__setattr__ = fast_setattr
    icalendar.stringToTextValues = fast_text_values
    base.foldOneLine = fast_fold
    icalendar.foldOneLine = fast_fold  # imported by name there
    base._haven_fast_paths = True
