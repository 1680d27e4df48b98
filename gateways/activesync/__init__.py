"""Exchange ActiveSync (EAS 14.0 to 16.1) for phones: iOS Mail, Android mail apps, Outlook
mobile, on the shared store.

- ``endpoint.py``: ``/Microsoft-Server-ActiveSync`` on the front door (MS-ASHTTP): methods,
  OPTIONS, the headers of every answer, login names;
- ``query.py``: the request line of [MS-ASHTTP] (plain or base64 query) and the
  ``MS-ASProtocolVersion`` header, with the one list of supported versions and commands;
- ``wbxml.py``: WBXML 1.3 <-> ``xml.etree.ElementTree`` with the code pages 0-25 of
  [MS-ASWBXML] (tables in ``codepages.py``); handlers and tests speak XML trees, never bytes;
- ``commands.py``: a POST to its command's handler and back (the provisioning rule; Provision,
  FolderSync, Settings so far);
- ``hierarchy.py``: the folder hierarchy FolderSync shows and its changes;
- ``mailitem.py``, ``syncplan.py``: a message as an EAS email item; what one mail Sync sends;
- ``contacts.py``: a stored vCard as an EAS contact and back (``pim.ConversionError``);
- ``search.py``: Search and Find (GAL, mailbox), ResolveRecipients with free/busy;
- ``meeting.py``: an invitation in a message as a meeting request ([MS-ASEMAIL] MeetingRequest);
  ``meetingresponse.py``: the MeetingResponse command into the default calendar;
- ``oof.py``: Settings Oof, the out-of-office replies the store sends at delivery.

The front door (gateways/http) mounts it behind its login when ``[activesync] enabled``;
like every protocol package it knows no other gateway and no front door.

Invariants
- ``query``, ``wbxml`` and ``codepages`` are pure: bytes and strings in, plain values out; no
  I/O, no store, no reactor, so they are fuzzable and may run in a worker pool (big WBXML
  documents should).  Each raises one exception class for bad input (``WbxmlError``,
  ``QueryError``), both ``ValueError``; nothing else escapes on hostile bytes.
- The tree's conventions (namespace = code page name, ``bytes`` text = OPAQUE) are written
  down in docs/activesync.md; handlers rely on them.
"""

from __future__ import annotations

from .commands import make_commands
from .endpoint import PREFIX, ActiveSyncEndpoint, make_endpoint

__all__ = ["PREFIX", "ActiveSyncEndpoint", "make_commands", "make_endpoint"]
