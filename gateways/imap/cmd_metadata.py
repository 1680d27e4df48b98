"""METADATA handlers (RFC 5464): GETMETADATA and SETMETADATA on an account's mailboxes and its
view of the server (mailbox ``""``), kept by the store (``Store.get_metadata`` /
``set_metadata``).

Invariants:
* Haven's mailboxes belong to one account, so ``/private/`` and ``/shared/`` entries of a
  mailbox are both the account's own (both kept, told apart by name).  On the server, the
  ``/shared/`` entries are the server's: read-only, and ``/shared/admin`` (§3.2.1) is
  ``mailto:postmaster@`` the server's host name; ``/private/`` server entries are the account's.
* Limits answer with RFC 5464's codes: a value over the store's size ``NO [METADATA MAXSIZE n]``,
  too many entries ``NO [METADATA TOOMANY]``; GETMETADATA's MAXSIZE leaves out bigger values and
  says how big the biggest was, ``OK [METADATA LONGENTRIES n]`` (§4.2.1).
* No unsolicited METADATA responses: they come only with NOTIFY (RFC 5465), which Haven does not
  offer.
"""

from __future__ import annotations

from store import errors
from store.interfaces import METADATA_MAX_VALUE

from .metadata import metadata_response
from .states import IMAPError

ADMIN = "/shared/admin"


class MetadataCommands:
    async def _metadata_target(self, mailbox: str):
        return None if mailbox == "" else (await self.mail_folder(mailbox)).id

    def _server_entries(self, names: list, depth: str) -> list:
        """The server's own read-only entries among those asked for."""
        def covers(name: str) -> bool:  # RFC 5464 §4.2.2: the entry, its children, or all below
            return (name == ADMIN or (depth == "1" and ADMIN.rpartition("/")[0] == name)
                    or (depth == "infinity" and ADMIN.startswith(name + "/")))
        if any(covers(name) for name in names):
            return [(ADMIN, ("mailto:postmaster@%s" % self.ctx.hostname).encode())]
        return []

    async def do_GETMETADATA(self, cmd):
        args = cmd.args
        mailbox, names, depth = args["mailbox"], args["entries"], args["depth"]
        folder_id = await self._metadata_target(mailbox)
        entries = await self.store.get_metadata(self.account.id, folder_id, names, depth)
        if folder_id is None:
            entries = sorted(dict([*entries, *self._server_entries(names, depth)]).items())
        code = None
        if args["maxsize"] is not None:
            longest = max((len(value) for _, value in entries if len(value) > args["maxsize"]), default=0)
            entries = [(name, value) for name, value in entries if len(value) <= args["maxsize"]]
            if longest:
                code = "METADATA LONGENTRIES %d" % longest
        if entries:
            self.write(metadata_response(mailbox, entries, self.utf8_names))
        return (code, "GETMETADATA completed") if code else None

    async def do_SETMETADATA(self, cmd):
        mailbox, values = cmd.args["mailbox"], cmd.args["values"]
        folder_id = await self._metadata_target(mailbox)
        if folder_id is None and any(name.startswith("/shared/") for name in values):
            raise IMAPError("NO", "The server's shared entries are set by its administrator")
        try:
            await self.store.set_metadata(self.account.id, folder_id, values)
        except errors.TooBig:
            raise IMAPError("NO", "Value too big", "METADATA MAXSIZE %d" % METADATA_MAX_VALUE) from None
        except errors.InvalidInput:
            raise IMAPError("NO", "Too many entries", "METADATA TOOMANY") from None
