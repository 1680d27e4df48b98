"""The audit trail of the ``haven`` command: one log line per change an admin made.

Invariants
- Every state-changing command calls :func:`audit` once per change, after the store did it;
  the line goes through the server's configured log method ([log] method stderr, file or
  syslog) on the logger ``haven.audit``, at INFO whatever ``[log] level`` says.
- The line reads ``audit: user=WHO action=GROUP.ACTION key=value ...``: who is the OS user
  running the command (with sudo, the user who ran sudo, and ``as=`` the one it ran as);
  the time is the log line's own.  Values with blanks or quotes are quoted.
- Passwords (and password hashes) are never given to it; :func:`audit` refuses keys that
  look like one, so a later command cannot log one by mistake.
"""

from __future__ import annotations

import getpass
import logging
import os

log = logging.getLogger("haven.audit")
log.setLevel(logging.INFO)  # the trail is kept whatever [log] level says

_SECRET = ("password", "passwd", "hash", "secret")


def who() -> str:
    """``user=NAME`` of the person running the command (``as=root`` after sudo)."""
    try:
        user = getpass.getuser()
    except Exception:  # no name for this uid (a container): its number
        user = str(os.getuid())
    sudo = os.environ.get("SUDO_USER")
    if sudo and sudo != user:
        return f"user={_value(sudo)} as={_value(user)}"
    return f"user={_value(user)}"


def _value(value) -> str:
    text = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
    if not text or any(c.isspace() or c in "\"'=" for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'
    return text


def audit(action: str, **fields) -> None:
    """Log one change: ``audit("user.add", address="alice@example.org")``."""
    for key in fields:
        if any(s in key.lower() for s in _SECRET):
            raise ValueError(f"audit: {key!r} is not logged")
    details = "".join(f" {key}={_value(value)}" for key, value in fields.items() if value is not None)
    log.info("audit: %s action=%s%s", who(), action, details)
