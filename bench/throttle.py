"""What a login costs the server when the throttle refuses it without checking the password,
against one whose password is checked (the argon2 hash an attacker would make Haven pay).

    python bench/throttle.py [--logins 1000] [--connections 20]

Starts a throwaway Haven (``haven.py``) with ``[auth] failure_delay = 0`` and ``max_penalty = 0``
so only CPU is measured, not the waits, and ``block_after = 3``.  Then, over IMAP from
127.0.0.1, ``--logins`` wrong-password LOGINs spread over ``--connections`` connections:

1. checked: each for another unknown login (nothing blocks; each costs one hash);
2. throttled: each for the bench account, after 3 wrong passwords blocked this address for it.

Reports the server process's CPU seconds (user + system, from /proc) per phase and per login,
and the wall time.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from haven import HavenInstance  # noqa: E402

USER = "bench@example.test"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def logins(host: str, port: int, users: list) -> int:
    """Wrong-password LOGINs on one connection, one after the other; returns the NO answers."""
    refused = 0
    with socket.create_connection((host, port), timeout=60) as s:
        f = s.makefile("rb")
        f.readline()
        for i, user in enumerate(users):
            s.sendall(f"a{i} LOGIN {user} wrong-{i}\r\n".encode())
            while True:
                line = f.readline()
                if not line:
                    return refused
                if line.startswith(f"a{i} ".encode()):
                    refused += line.startswith(f"a{i} NO".encode())
                    break
        s.sendall(b"z LOGOUT\r\n")
    return refused


def phase(inst: HavenInstance, users: list, connections: int) -> tuple[float, float, int]:
    per = [users[i::connections] for i in range(connections)]
    cpu0, t0 = cpu_seconds(inst.proc.pid), time.monotonic()
    with ThreadPoolExecutor(connections) as pool:
        refused = sum(pool.map(lambda batch: logins(inst.host, inst.imap_port, batch), per))
    return cpu_seconds(inst.proc.pid) - cpu0, time.monotonic() - t0, refused


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--logins", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=20)
    args = ap.parse_args()
    inst = HavenInstance(pop3_port=None, users={USER: "benchpass"},
                         overrides={"auth.failure_delay": "0", "auth.max_penalty": "0", "auth.block_after": "3",
                                    "auth.cache_ttl": "0"})
    inst.start()
    try:
        rows = []
        cpu, wall, refused = phase(inst, [f"nobody{i}@example.test" for i in range(args.logins)], args.connections)
        rows.append(("checked (one hash each)", cpu, wall, refused))
        logins(inst.host, inst.imap_port, [USER] * 3)  # three distinct wrong passwords: blocked
        cpu, wall, refused = phase(inst, [USER] * args.logins, args.connections)
        rows.append(("throttled (blocked pair, no hash)", cpu, wall, refused))
    finally:
        inst.stop()
    print(f"| {args.logins} wrong-password IMAP LOGINs, {args.connections} connections | server CPU s | "
          "CPU ms per login | wall s | refused |")
    print("|---|---|---|---|---|")
    for name, cpu, wall, refused in rows:
        print(f"| {name} | {cpu:.2f} | {1000 * cpu / args.logins:.2f} | {wall:.2f} | {refused} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
