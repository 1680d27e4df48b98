"""The IMAP connection states (RFC 3501 §3), the commands each allows, and the error a
command handler raises for its own failure reply.  Its own module so the handler mixins
(cmd_*.py) and the protocol that combines them import it without a loop."""

from __future__ import annotations

from typing import Optional

NOT_AUTH, AUTH, SELECTED, LOGOUT = "not-authenticated", "authenticated", "selected", "logout"
_ANY = {NOT_AUTH, AUTH, SELECTED}
_AUTHED = {AUTH, SELECTED}
STATES = {
    "CAPABILITY": _ANY, "NOOP": _ANY, "LOGOUT": _ANY, "ID": _ANY,
    "STARTTLS": {NOT_AUTH}, "LOGIN": {NOT_AUTH}, "AUTHENTICATE": {NOT_AUTH},
    "ENABLE": _AUTHED, "SELECT": _AUTHED, "EXAMINE": _AUTHED, "CREATE": _AUTHED, "DELETE": _AUTHED,
    "RENAME": _AUTHED, "SUBSCRIBE": _AUTHED, "UNSUBSCRIBE": _AUTHED, "LIST": _AUTHED, "LSUB": _AUTHED,
    "STATUS": _AUTHED, "APPEND": _AUTHED, "NAMESPACE": _AUTHED, "IDLE": _AUTHED,
    "CHECK": {SELECTED}, "CLOSE": {SELECTED}, "UNSELECT": {SELECTED}, "EXPUNGE": {SELECTED},
    "SEARCH": {SELECTED}, "FETCH": {SELECTED}, "STORE": {SELECTED}, "COPY": {SELECTED},
    "MOVE": {SELECTED}, "GETQUOTA": _AUTHED, "GETQUOTAROOT": _AUTHED, "SETQUOTA": _AUTHED,
    "GETMETADATA": _AUTHED, "SETMETADATA": _AUTHED,
    "SORT": {SELECTED}, "THREAD": {SELECTED},
    "COMPRESS": _AUTHED,
}


class IMAPError(Exception):
    """A handler's own failure reply: ``tag STATUS [CODE] text``."""

    def __init__(self, status: str, text: str, code: Optional[str] = None):
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code
