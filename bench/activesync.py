"""ActiveSync: the initial Sync of the corpus as a phone does it, and how fast a Ping wakes.

    python bench/activesync.py                  # Haven on SQLite, the 2,000-message corpus
    python bench/activesync.py --count 500 --rounds 10
    python bench/activesync.py --mariadb        # on MariaDB (127.0.0.1:3306, root)

Starts a throwaway Haven (``haven.py``: HTTP 28080, LMTP 28424, ``/var/tmp/haven-bench/
haven-eas``), delivers the seeded corpus (``corpus.py``) over LMTP, then, as one iPhone-shaped
device (EAS 16.1, WBXML over HTTP on loopback, Basic login):

1. FolderSync, Sync of INBOX with key 0, then Syncs in windows of 100 with iOS's options (all
   dates, BodyPreference HTML truncated at 200,000 octets, MIMESupport 0) until no
   MoreAvailable: the time of each window and in all;
2. ``--rounds`` times: a Ping on INBOX (heartbeat 300 s) is parked, one message is delivered
   over LMTP, and the time from the LMTP ``250`` to the Ping's answer is taken; a Sync then
   takes the message (not timed);
3. with ``--pings N`` (default 1,000): N more devices of the account sync INBOX and park a
   Ping each (N connections); the server's PSS before and after gives the cost of a parked
   Ping; one delivery then wakes them all, timed until the last answer.

Prints a markdown table; bench/README.md ("ActiveSync") has the figures.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import smtplib
import statistics
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateways.activesync.wbxml import decode, encode  # noqa: E402

USER, PASSWORD = "eas@example.test", "benchpass"
BASE = Path("/var/tmp/haven-bench/haven-eas")
HTTP_PORT, LMTP_PORT, IMAP_PORT = 28080, 28424, 28143
OPTIONS = ("<Options><FilterType>0</FilterType><MIMESupport>0</MIMESupport><b:BodyPreference><b:Type>2</b:Type>"
           "<b:TruncationSize>200000</b:TruncationSize></b:BodyPreference></Options>")


def post(cmd: str, xml: str, device: str = "ApplBENCH0001") -> ET.Element:
    conn = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=600)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    conn.request("POST", f"/Microsoft-Server-ActiveSync?Cmd={cmd}&User={USER}&DeviceId={device}&DeviceType=iPhone",
                 body=encode(ET.fromstring(xml)), headers={"Authorization": "Basic " + auth,
                                                           "MS-ASProtocolVersion": "16.1",
                                                           "Content-Type": "application/vnd.ms-sync.wbxml"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"{cmd}: HTTP {resp.status}")
    return decode(data)


def text(el, path: str):
    """The text at ``path`` (``page:name`` steps) of a decoded answer, or None."""
    for step in path.split("/"):
        page, _, name = step.partition(":")
        el = el.find("{%s}%s" % (page, name)) if el is not None else None
    return None if el is None else (el.text.decode() if isinstance(el.text, bytes) else el.text)


def start_haven(base: Path, http_port: int, lmtp_port: int, imap_port: int, users: dict, mariadb=None):
    """A throwaway Haven with ActiveSync on and the connection limits off, on SQLite or (``mariadb``:
    its URL) on a database made anew; started."""
    from haven import HavenInstance
    overrides = {"activesync.enabled": "yes", "lmtp.max_connections": "0", "http.max_connections": "0",
                 "http.max_connections_per_ip": "0", "http.max_requests_per_ip": "0"}
    if mariadb:
        name = mariadb.rsplit("/", 1)[1]
        subprocess.run(["mariadb", "-h127.0.0.1", "-uroot", "-e", f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE "
                        f"{name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"], check=True)
        overrides["store.url"] = mariadb
    inst = HavenInstance(base=base, imap_port=imap_port, lmtp_port=lmtp_port, pop3_port=None, http_port=http_port,
                         users=users, overrides=overrides)
    inst.start()
    return inst


def sync(key: str, cid: str, window: int = 100):
    xml = (f'<Sync xmlns="AirSync" xmlns:b="AirSyncBase"><Collections><Collection><SyncKey>{key}</SyncKey>'
           f'<CollectionId>{cid}</CollectionId><WindowSize>{window}</WindowSize>{OPTIONS}</Collection>'
           f'</Collections></Sync>')
    coll = post("Sync", xml).find("{AirSync}Collections/{AirSync}Collection")
    adds = len(coll.findall("{AirSync}Commands/{AirSync}Add"))
    return text(coll, "AirSync:SyncKey"), adds, coll.find("{AirSync}MoreAvailable") is not None


def deliver(lmtp: smtplib.LMTP, raw: bytes) -> float:
    """Sends one message; the time its 250 arrived."""
    lmtp.sendmail("bench@example.org", [USER], raw)
    return time.monotonic()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--mariadb", nargs="?", const="mysql://root@127.0.0.1:3306/haven_bench_eas", default=None)
    ap.add_argument("--pings", type=int, default=1000, help="parked Pings for the memory figure (0: none)")
    args = ap.parse_args()
    from corpus import generate
    inst = start_haven(BASE, HTTP_PORT, LMTP_PORT, IMAP_PORT, {USER: PASSWORD}, args.mariadb)
    try:
        messages = generate(args.count)
        lmtp = smtplib.LMTP("127.0.0.1", LMTP_PORT)
        for raw in messages:
            lmtp.sendmail("bench@example.org", [USER], raw)
        print(f"delivered {len(messages)} messages ({sum(map(len, messages)) / 1e6:.1f} MB)", file=sys.stderr)
        tree = post("FolderSync", '<FolderSync xmlns="FolderHierarchy"><SyncKey>0</SyncKey></FolderSync>')
        inbox = next(text(a, "FolderHierarchy:ServerId") for a in tree.iter("{FolderHierarchy}Add")
                     if text(a, "FolderHierarchy:DisplayName") == "INBOX")
        key, _adds, _more = sync("0", inbox)
        windows, total_adds = [], 0
        started = time.monotonic()
        more = True
        while more:
            t0 = time.monotonic()
            key, adds, more = sync(key, inbox)
            windows.append(time.monotonic() - t0)
            total_adds += adds
        total = time.monotonic() - started
        latencies = []
        for i in range(args.rounds):
            box = {}
            ping = ('<Ping xmlns="Ping"><HeartbeatInterval>300</HeartbeatInterval><Folders><Folder>'
                    f'<Id>{inbox}</Id><Class>Email</Class></Folder></Folders></Ping>')
            t = threading.Thread(target=lambda: box.update(answer=post("Ping", ping), at=time.monotonic()))
            t.start()
            time.sleep(0.5)
            sent = deliver(lmtp, b"From: b@example.org\r\nSubject: ping %d\r\n\r\nwake up\r\n" % i)
            t.join(30)
            if text(box.get("answer"), "Ping:Status") != "2":
                raise RuntimeError(f"round {i}: Ping answered {text(box.get('answer'), 'Ping:Status')}")
            latencies.append(box["at"] - sent)
            key, _adds, _more = sync(key, inbox)
        parked = many_pings(inst.proc.pid, lmtp, inbox, args.pings) if args.pings else None
        lmtp.quit()
    finally:
        inst.stop()
    store = "MariaDB" if args.mariadb else "SQLite"
    print(f"| ActiveSync, Haven on {store}, {args.count} messages | figure |")
    print("|---|---|")
    print(f"| initial Sync, {len(windows)} windows of 100 ({total_adds} items) | {total:.2f} s |")
    print(f"| slowest window / median window | {max(windows) * 1000:.0f} ms / "
          f"{statistics.median(windows) * 1000:.0f} ms |")
    print(f"| Ping wake-up after the LMTP 250, {len(latencies)} rounds: median / max | "
          f"{statistics.median(latencies) * 1000:.1f} ms / {max(latencies) * 1000:.1f} ms |")
    if parked:
        print(f"| {args.pings} parked Pings: server PSS per Ping / RSS per Ping | {parked[0]:.1f} KiB / "
              f"{parked[1]:.1f} KiB |")
        print(f"| {args.pings} parked Pings: all answered after one delivery | {parked[2] * 1000:.0f} ms |")
    return 0


def memory_kib(pid: int) -> tuple:
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def many_pings(pid: int, lmtp, inbox: str, n: int) -> tuple:
    """(PSS KiB per parked Ping, RSS KiB per parked Ping, seconds until all answered a delivery)."""
    devices = [f"ApplMANY{i:05d}" for i in range(n)]
    for device in devices:  # each syncs INBOX once, so a Ping of it waits
        post("FolderSync", '<FolderSync xmlns="FolderHierarchy"><SyncKey>0</SyncKey></FolderSync>', device)
        coll = post("Sync", f'<Sync xmlns="AirSync"><Collections><Collection><SyncKey>0</SyncKey>'
                            f'<CollectionId>{inbox}</CollectionId></Collection></Collections></Sync>', device)
        key = text(coll.find("{AirSync}Collections/{AirSync}Collection"), "AirSync:SyncKey")
        post("Sync", f'<Sync xmlns="AirSync"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{inbox}'
                     f'</CollectionId><WindowSize>512</WindowSize></Collection></Collections></Sync>', device)
    time.sleep(1)
    rss0, pss0 = memory_kib(pid)
    ping = ('<Ping xmlns="Ping"><HeartbeatInterval>600</HeartbeatInterval><Folders><Folder>'
            f'<Id>{inbox}</Id><Class>Email</Class></Folder></Folders></Ping>')
    answered = []
    threading.stack_size(256 * 1024)
    threads = [threading.Thread(target=lambda d=d: answered.append((post("Ping", ping, d), time.monotonic())))
               for d in devices]
    for t in threads:
        t.start()
    time.sleep(max(3, n / 200))
    rss1, pss1 = memory_kib(pid)
    if answered:
        raise RuntimeError(f"{len(answered)} Pings answered before the delivery")
    sent = deliver(lmtp, b"From: b@example.org\r\nSubject: all of you\r\n\r\nwake up\r\n")
    for t in threads:
        t.join(60)
    if len(answered) != n or any(text(a, "Ping:Status") != "2" for a, _t in answered):
        raise RuntimeError(f"{len(answered)} of {n} Pings answered with changes")
    return (pss1 - pss0) / n, (rss1 - rss0) / n, max(t for _a, t in answered) - sent


if __name__ == "__main__":
    sys.exit(main())
