"""What every raw-socket test client shares (IMAP, POP3, ManageSieve, the abuse tests' wire):
its socket closed once, quietly, and ``with Client(...) as c:``."""

from __future__ import annotations


class SocketClient:
    sock = None

    def close(self) -> None:
        try:
            self.sock.close()
        except (OSError, AttributeError):
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
