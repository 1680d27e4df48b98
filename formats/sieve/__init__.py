"""Server-side Sieve (RFC 5228): compile a user's script once, run it per delivered message.

    script = compile_script(text)          # SieveError on a bad script (save time)
    result = run(script, Message(raw, envelope_from, envelope_to, user_addresses=(...)))
    for action in result.actions: ...      # Keep / FileInto / Discard / Reject / Redirect /
                                           # Vacation
    for note in result.notes: log(note)    # e.g. why a vacation reply was not sent
    reply = build_vacation_reply(vacation, raw, user_address, hostname, time.time())

Invariants
- Pure: text and bytes in, frozen dataclasses (and the reply's bytes) out. No I/O, SQL, clock
  or reactor; run() is CPU work for the delivery pipeline's CPU pool.
- compile_script() raises only SieveError, whose message starts with "line N: " where the
  parser knows the line. A script that compiled never fails at run time with an exception:
  run() catches everything and returns Result(actions=[Keep()], error=reason), because
  RFC 5228 §2.10.6 says a run-time error means the implicit keep, and a message must never
  be lost to a broken script.
- run() is linear in script size times header size: Sieve has no loops, and :matches uses a
  backtracking-free wildcard matcher (no regex), so a hostile header cannot make a user's
  pattern explode. The header is parsed once per run and each field decoded once; the body
  only when a ``body`` test asks, once, and bounded (formats.sieve.body). Variables are
  bounded too (MAX_VARIABLE_SIZE, MAX_EXPANSION, MAX_VARIABLES).
- The result is already reduced (RFC 5228 §2.10.2-3): the implicit keep is a Keep when no
  action cancelled it, and the same mailbox or redirect address appears at most once.
- Vacation: run() applies the rules that depend only on the message and the script
  (RFC 5230 §4.6-4.7, RFC 3834 §2); a refused reply is not in ``actions`` and the reason is
  in ``notes``. Remembering whom we already answered (RFC 5230 §4.2: per handle, sender and
  period) is the pipeline's job.

Implemented: require, if/elsif/else, stop; tests address, envelope, header, exists, size,
true, false, allof, anyof, not; :is/:contains/:matches; comparators i;ascii-casemap (default)
and i;octet; address parts :all/:localpart/:domain and :user/:detail (RFC 5233, separator
"+"); actions keep, discard, fileinto (:copy RFC 3894, :create RFC 5490), redirect (:copy),
reject and ereject (RFC 5429); imap4flags (RFC 5232: setflag/addflag/removeflag, hasflag,
:flags on keep and fileinto); body (RFC 5173: :raw, :content, :text); variables (RFC 5229:
set with its modifiers, ${name} and match variables ${N}, the string test); vacation
(RFC 5230, and :seconds from RFC 6131 "vacation-seconds").

Not done yet: relational, regex, date, editheader, include, duplicate, notify, environment;
variable namespaces (a "${ns.name}" reference is a compile error). Mailbox names are passed
through as written in the script (after variable expansion); the pipeline maps them to
folders (and decides what :create may create).
"""
from __future__ import annotations


class SieveError(ValueError):
    """A script that cannot be compiled; the message says where ("line 3: ...") and why."""


from formats.sieve.model import (  # noqa: E402  (SieveError must exist first)
    Discard, FileInto, Keep, Redirect, Reject, Script, Vacation,
)
from formats.sieve.compiler import (  # noqa: E402
    LATER_EXTENSIONS, SUPPORTED_EXTENSIONS, compile_script,
)
from formats.sieve.interpreter import Message, Result, run  # noqa: E402
from formats.sieve.vacation import build_vacation_reply  # noqa: E402

__all__ = [
    "SieveError", "compile_script", "run", "Script", "Message", "Result",
    "Keep", "FileInto", "Discard", "Reject", "Redirect", "Vacation",
    "build_vacation_reply",
    "SUPPORTED_EXTENSIONS", "LATER_EXTENSIONS",
]
