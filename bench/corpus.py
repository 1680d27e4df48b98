"""Deterministic, seeded mail corpus for the benchmark.

``generate(count, seed)`` returns ``count`` RFC 5322 messages as ``bytes`` with
CRLF line endings; it writes nothing.  The mix averages roughly 28 KB a message:

* ~65 % small ``text/plain`` (2-8 KB of text),
* ~20 % ``multipart/alternative`` (the same text as plain and as HTML),
* ~15 % ``multipart/mixed`` with a base64 attachment of 50-300 KB (encoded size,
  skewed toward the small end).

Bodies are drawn from a small built-in vocabulary.  A few *rare words* never come
from the vocabulary: each is planted in the body text of a fixed, known set of
messages, so ``SEARCH BODY <word>`` has a known hit count
(``rare_word_hits(count)``).  Headers never contain a rare word.

Run ``python bench/corpus.py [COUNT]`` for a summary of the corpus.
"""

from __future__ import annotations

import base64
import random
import sys
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

VOCABULARY = """
the of and to in is that for it as was with be by on not he this are or his from at
which but have an they you were her she there been one all we their has would when
what if will more no out so said can who about up them some could him into its then two
time like other only new these may first any my now such do people over how did most
made after also well many before must through back years where much your way down
should because long each just those state good very make world still own see men work
even here both between life under being never day same another know while last might
great old year off come since against go came right used take three meeting budget
report project schedule review invoice quarter release server mailbox calendar contact
agreement draft proposal customer vendor shipment delivery account network backup
migration upgrade ticket support office travel lunch coffee weekend holiday family
garden kitchen window summer winter autumn spring morning evening tomorrow yesterday
""".split()

# word -> (modulus, residue): planted in message i (0-based) when i % modulus == residue.
RARE_WORDS = {
    "quetzalcoatl": (50, 7),      # 2 % of messages
    "zanzibarite": (200, 13),     # 0.5 %
    "xylophonist": (10, 3),       # 10 %
}

NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
         "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil",
         "trent", "victor", "walter", "yvonne"]
DOMAINS = ["example.org", "example.net", "corp.example.com", "mail.example.edu"]
ATTACHMENT_TYPES = [("application/pdf", "pdf"), ("image/jpeg", "jpg"),
                    ("application/zip", "zip"), ("application/octet-stream", "bin")]
EPOCH = datetime(2024, 1, 8, 9, 0, 0, tzinfo=timezone.utc)


def rare_word_hits(count: int) -> dict[str, int]:
    """How many of the first ``count`` messages contain each rare word."""
    return {w: sum(1 for i in range(count) if i % m == r) for w, (m, r) in RARE_WORDS.items()}


def subject_and_body_hits(messages: list[bytes], subject_word: str, body_word: str) -> int:
    """How many messages have ``subject_word`` in their Subject (any case) and ``body_word`` (a
    rare word: only ever in body text) anywhere in them."""
    n = 0
    for raw in messages:
        head = raw.split(b"\r\n\r\n", 1)[0]
        subject = next((line for line in head.split(b"\r\n") if line.startswith(b"Subject: ")), b"")
        n += subject_word.encode() in subject.lower() and body_word.encode() in raw
    return n


def generate(count: int = 2000, seed: int = 42) -> list[bytes]:
    """Return ``count`` messages; the same (count, seed) always gives the same bytes."""
    rng = random.Random(seed)
    return [_message(i, rng) for i in range(count)]


def _message(i: int, rng: random.Random) -> bytes:
    sender = f"{rng.choice(NAMES)}@{rng.choice(DOMAINS)}"
    date = EPOCH + timedelta(minutes=17 * i, seconds=rng.randrange(60))
    subject = " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(3, 8))).capitalize()
    relay = f"mx{rng.randint(1, 9)}.{rng.choice(DOMAINS)}"
    headers = [
        f"Received: from {relay} (unknown [192.0.2.{rng.randint(1, 254)}])\r\n"
        f"\tby mail.example.test with ESMTPS id {rng.getrandbits(48):012X};\r\n"
        f"\t{format_datetime(date + timedelta(seconds=3))}",
        f"From: {sender.split('@')[0].capitalize()} <{sender}>",
        "To: Bench User <bench@example.test>",
        f"Subject: {subject}",
        f"Date: {format_datetime(date)}",
        f"Message-ID: <{i:06d}.{rng.getrandbits(32):08x}@{sender.split('@')[1]}>",
        "MIME-Version: 1.0",
    ]
    words = [w for w, (m, r) in RARE_WORDS.items() if i % m == r]
    text = _paragraphs(rng, rng.randint(2048, 8192), words)
    kind = rng.random()
    if kind < 0.15:
        body_headers, body = _with_attachment(i, rng, text)
    elif kind < 0.35:
        body_headers, body = _alternative(i, text)
    else:
        body_headers, body = ["Content-Type: text/plain; charset=us-ascii",
                              "Content-Transfer-Encoding: 7bit"], text
    head = "\r\n".join(headers + body_headers) + "\r\n\r\n"
    return (head + body).encode("ascii")


def _paragraphs(rng: random.Random, size: int, planted: list[str]) -> str:
    """About ``size`` bytes of wrapped text lines; planted words go in the middle."""
    words: list[str] = []
    length = 0
    while length < size:
        w = rng.choice(VOCABULARY)
        words.append(w)
        length += len(w) + 1
    for w in planted:
        words.insert(rng.randrange(len(words) // 4, 3 * len(words) // 4), w)
    lines, line = [], []
    for n, w in enumerate(words):
        line.append(w)
        if sum(len(x) + 1 for x in line) > 66 or n == len(words) - 1:
            lines.append(" ".join(line))
            line = []
            if rng.random() < 0.12:
                lines.append("")
    return "\r\n".join(lines) + "\r\n"


def _alternative(i: int, text: str) -> tuple[list[str], str]:
    boundary = f"=_alt_{i:06d}"
    html_lines = "\r\n".join(f"<p>{line}</p>" for line in text.split("\r\n") if line)
    html = f"<html><body>\r\n{html_lines}\r\n</body></html>\r\n"
    body = (f"This is a multi-part message in MIME format.\r\n\r\n"
            f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n"
            f"Content-Transfer-Encoding: 7bit\r\n\r\n{text}\r\n"
            f"--{boundary}\r\nContent-Type: text/html; charset=us-ascii\r\n"
            f"Content-Transfer-Encoding: 7bit\r\n\r\n{html}\r\n"
            f"--{boundary}--\r\n")
    return [f'Content-Type: multipart/alternative; boundary="{boundary}"'], body


def _with_attachment(i: int, rng: random.Random, text: str) -> tuple[list[str], str]:
    boundary = f"=_mix_{i:06d}"
    encoded_size = int(50_000 + 250_000 * rng.random() ** 1.6)
    mime, ext = rng.choice(ATTACHMENT_TYPES)
    payload = base64.encodebytes(rng.randbytes(encoded_size * 3 // 4)).decode("ascii")
    payload = payload.replace("\n", "\r\n")
    name = f"{rng.choice(VOCABULARY)}-{i:06d}.{ext}"
    body = (f"This is a multi-part message in MIME format.\r\n\r\n"
            f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n"
            f"Content-Transfer-Encoding: 7bit\r\n\r\n{text}\r\n"
            f"--{boundary}\r\nContent-Type: {mime}; name=\"{name}\"\r\n"
            f"Content-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n{payload}\r\n"
            f"--{boundary}--\r\n")
    return [f'Content-Type: multipart/mixed; boundary="{boundary}"'], body


def summary(messages: list[bytes]) -> str:
    sizes = sorted(len(m) for m in messages)
    total = sum(sizes)
    return (f"{len(messages)} messages, {total / 1e6:.1f} MB, mean {total / len(sizes) / 1024:.1f} KiB, "
            f"median {sizes[len(sizes) // 2] / 1024:.1f} KiB, max {sizes[-1] / 1024:.0f} KiB")


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    msgs = generate(n)
    print(summary(msgs))
    print("rare words:", rare_word_hits(n))
