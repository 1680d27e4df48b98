"""Pure format code that the store and the gateways both need.

- :mod:`formats.mime`: RFC 5322 / MIME analysis (envelope, body structure, decoded text);
- :mod:`formats.sieve`: the Sieve language (RFC 5228 and extensions): compiler and interpreter.

Everything here is bytes or text in, plain data out: no I/O, no SQL, no reactor, no import of
``store``, ``gateways``, ``auth`` or ``conf``.  That is what lets both sides of the contract use
it (tests/test_layering.py holds the rule).
"""
