"""Server-side Sieve (RFC 5228): compile a user's script once, run it per delivered message.

    script = compile_script(text)          # SieveError on a bad script (save time)
    result = run(script, Message(raw, envelope_from, envelope_to))
    for action in result.actions: ...      # Keep / FileInto / Discard / Reject / Redirect

Invariants
- Pure: text and bytes in, frozen dataclasses out. No I/O, SQL, clock or reactor; run() is
  CPU work for the delivery pipeline's CPU pool.
- compile_script() raises only SieveError, whose message starts with "line N: " where the
  parser knows the line. A script that compiled never fails at run time with an exception:
  run() catches everything and returns Result(actions=[Keep()], error=reason), because
  RFC 5228 §2.10.6 says a run-time error means the implicit keep, and a message must never
  be lost to a broken script.
- run() is linear in script size times header size: base Sieve has no loops, and :matches
  uses a backtracking-free wildcard matcher (no regex), so a hostile header cannot make a
  user's pattern explode.
- The result is already reduced (RFC 5228 §2.10.2-3): the implicit keep is a Keep when no
  action cancelled it, and the same mailbox or redirect address appears at most once.

Implemented: require, if/elsif/else, stop; tests address, envelope, header, exists, size,
true, false, allof, anyof, not; :is/:contains/:matches; comparators i;ascii-casemap (default)
and i;octet; address parts :all/:localpart/:domain and :user/:detail (RFC 5233, separator
"+"); actions keep, discard, fileinto (:copy RFC 3894, :create RFC 5490), redirect (:copy),
reject and ereject (RFC 5429).

Not done yet: imap4flags, body, variables, vacation (``require`` of them is refused with
"not supported yet"), relational, regex, date, editheader, include, duplicate, notify.
Mailbox names are passed through as written in the script; the pipeline maps them to folders
(and decides what :create may create).
"""
from __future__ import annotations


class SieveError(ValueError):
    """A script that cannot be compiled; the message says where ("line 3: ...") and why."""


from store.sieve.model import (  # noqa: E402  (SieveError must exist first)
    Discard, FileInto, Keep, Redirect, Reject, Script,
)
from store.sieve.compiler import (  # noqa: E402
    LATER_EXTENSIONS, SUPPORTED_EXTENSIONS, compile_script,
)
from store.sieve.interpreter import Message, Result, run  # noqa: E402

__all__ = [
    "SieveError", "compile_script", "run", "Script", "Message", "Result",
    "Keep", "FileInto", "Discard", "Reject", "Redirect",
    "SUPPORTED_EXTENSIONS", "LATER_EXTENSIONS",
]
