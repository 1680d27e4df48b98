"""ManageSieve replies as bytes, pure (RFC 5804 §1.3, §1.4, §4).

* :func:`string`: a quoted string when it may be one (at most 1024 octets, no CR, LF or NUL;
  ``"`` and ``\\`` escaped), else a server literal ``{n}`` CRLF octets (literal-s2c).
* :func:`reply`: ``OK`` / ``NO`` / ``BYE``, an optional response code in parentheses (with an
  optional string argument, e.g. ``(TAG "x")``), an optional human-readable string.
* :func:`capability_lines`: one ``"NAME" ["value"]`` line per capability (RFC 5804 §1.8).
"""

from __future__ import annotations

from typing import Iterable, Optional, Union

#: RFC 5804 §4: quoted = DQUOTE *1024QUOTED-CHAR DQUOTE
MAX_QUOTED = 1024


def _octets(value: Union[str, bytes]) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def literal(value: Union[str, bytes]) -> bytes:
    data = _octets(value)
    return b"{%d}\r\n" % len(data) + data


def string(value: Union[str, bytes]) -> bytes:
    data = _octets(value)
    if len(data) <= MAX_QUOTED and b"\r" not in data and b"\n" not in data and b"\0" not in data:
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def reply(status: str, code: Optional[str] = None, text: Optional[str] = None,
          code_arg: Optional[Union[str, bytes]] = None) -> bytes:
    out = status.encode("ascii")
    if code:
        out += b" (" + code.encode("ascii")
        if code_arg is not None:
            out += b" " + string(code_arg)
        out += b")"
    if text is not None:
        out += b" " + string(text)
    return out + b"\r\n"


def capability_lines(capabilities: Iterable[tuple]) -> bytes:
    return b"".join(string(name) + (b" " + string(value) if value is not None else b"") + b"\r\n"
                    for name, value in capabilities)
