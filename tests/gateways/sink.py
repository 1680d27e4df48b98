"""A sink that records what a framer or decoder spools (the ``write``/``close`` of a Spool)."""

from __future__ import annotations


class RecordingSink:
    def __init__(self):
        self.data, self.closed = bytearray(), False

    def write(self, data) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True
