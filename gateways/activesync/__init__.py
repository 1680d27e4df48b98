"""Exchange ActiveSync (EAS 14.0, 14.1, 16.0, 16.1) for phones: the wire pieces so far.

- ``wbxml.py``: WBXML 1.3 <-> ``xml.etree.ElementTree`` with the code pages 0-25 of
  [MS-ASWBXML] (tables in ``codepages.py``); handlers and tests speak XML trees, never bytes;
- ``query.py``: the request line of [MS-ASHTTP] (plain or base64 query) and the
  ``MS-ASProtocolVersion`` header, with the one list of supported versions and commands.

Invariants
- Pure: bytes and strings in, plain values out; no I/O, no store, no reactor, so everything
  here is fuzzable and may run in a worker pool (big WBXML documents should).
- One exception class a module for bad input (``WbxmlError``, ``QueryError``), each a
  ``ValueError``; nothing else escapes on hostile bytes, which the tests fuzz.
- The tree's conventions (namespace = code page name, ``bytes`` text = OPAQUE) are written
  down in docs/activesync.md; handlers rely on them.

Not yet: the HTTP resource, the store's devices and sync state, the commands (issue 15).
Like every protocol gateway this package imports only the store's contract, ``formats``,
``gateways.common`` and itself (tests/test_layering.py).
"""
