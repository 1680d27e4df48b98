"""A generated, seeded mail corpus for the text index tests: headers in UTF-8, ISO-8859-1 and
RFC 2047 encoded-words (B and Q), bodies in 7bit, 8bit, quoted-printable and base64, plain and
HTML (tags and entities), single parts, multipart/alternative with an attachment, and an
encapsulated message/rfc822; and the search terms to ask of it."""

from __future__ import annotations

import base64
import quopri
import random

WORDS = ["glacier", "orchid", "lunch", "report", "Zanzibar", "café", "naïve", "Straße", "ÉCOLE", "garçon",
         "über", "meeting", "q1", "budget", "fjord", "crème", "brûlée", "Ωmega", "x-ray", "hello", "world",
         "invoice", "Schedule", "sunrise"]
NAMES = ["Zoë Brontë", "Bob", "Jörg Müller", "Ann Lee", "Renée O'Hara", "Élodie"]
DOMAINS = ["example.test", "mail.example.org", "glacier.example"]


def _latin1_ok(text: str) -> bool:
    try:
        text.encode("iso-8859-1")
        return True
    except UnicodeEncodeError:
        return False


def _encoded_word(rng: random.Random, text: str) -> str:
    charset = "iso-8859-1" if _latin1_ok(text) and rng.random() < 0.5 else "utf-8"
    data = text.encode(charset)
    if rng.random() < 0.5:
        return f"=?{charset}?B?{base64.b64encode(data).decode()}?="
    q = "".join(chr(b) if (48 <= b < 123 and chr(b).isalnum()) else ("_" if b == 32 else "=%02X" % b)
                for b in data)
    return f"=?{charset}?Q?{q}?="


def _header_text(rng: random.Random, text: str) -> bytes:
    """A header value: ASCII as is, else an encoded-word or raw UTF-8 (8bit header)."""
    if text.isascii() and rng.random() < 0.7:
        return text.encode()
    if rng.random() < 0.75:
        return _encoded_word(rng, text).encode()
    return text.encode("utf-8")


def _phrase(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _address(rng: random.Random) -> bytes:
    name = rng.choice(NAMES)
    local = rng.choice(["bob", "ann", "jorg", "glacier", "orchid.fan", "x"])
    addr = f"{local}@{rng.choice(DOMAINS)}".encode()
    if rng.random() < 0.2:
        return addr
    return _header_text(rng, name) + b" <" + addr + b">"


def _part(rng: random.Random, html: bool) -> bytes:
    text = _phrase(rng, rng.randint(3, 40))
    if html:
        text = "<html><body><p>" + text.replace(" ", rng.choice([" ", "</p> <p>", " <b>x</b> "]), 3) + \
            " &amp; caf&eacute;</p></body></html>"
    charset = "iso-8859-1" if _latin1_ok(text) and rng.random() < 0.4 else "utf-8"
    data = text.encode(charset)
    enc = rng.choice(["7bit", "8bit", "quoted-printable", "base64"]) if not data.isascii() or rng.random() < 0.8 \
        else "7bit"
    if enc == "7bit" and not data.isascii():
        enc = "8bit"
    if enc == "quoted-printable":
        data = quopri.encodestring(data)
    elif enc == "base64":
        data = base64.encodebytes(data)
    ctype = "text/html" if html else "text/plain"
    return (f"Content-Type: {ctype}; charset={charset}\r\nContent-Transfer-Encoding: {enc}\r\n\r\n").encode() + \
        data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def message(rng: random.Random, i: int) -> bytes:
    head = [b"From: " + _address(rng), b"To: " + b", ".join(_address(rng) for _ in range(rng.randint(1, 3)))]
    if rng.random() < 0.5:
        head.append(b"Cc: " + _address(rng))
    if rng.random() < 0.3:
        head.append(b"Bcc: " + _address(rng))
    head += [b"Subject: " + _header_text(rng, _phrase(rng, rng.randint(1, 4))),
             b"Date: Mon, 7 Feb 1994 21:52:25 -0800", b"Message-ID: <%d@gen.test>" % i, b"MIME-Version: 1.0"]
    shape = rng.choice(["plain", "html", "alternative", "mixed", "rfc822"])
    if shape in ("plain", "html"):
        part = _part(rng, shape == "html")
        ctype_line, rest = part.split(b"\r\n", 1)
        return b"\r\n".join(head) + b"\r\n" + ctype_line + b"\r\n" + rest
    b = b"=-b%d" % i
    if shape == "alternative":
        parts = [_part(rng, False), _part(rng, True)]
        ctype = b"multipart/alternative"
    elif shape == "mixed":
        attachment = (b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                      + base64.encodebytes(_phrase(rng, 5).encode()).replace(b"\n", b"\r\n"))
        parts = [_part(rng, rng.random() < 0.3), attachment]
        ctype = b"multipart/mixed"
    else:
        inner = [b"From: " + _address(rng), b"Subject: " + _header_text(rng, _phrase(rng, 2))]
        inner_msg = b"\r\n".join(inner) + b"\r\n" + _part(rng, False)
        parts = [_part(rng, False), b"Content-Type: message/rfc822\r\n\r\n" + inner_msg]
        ctype = b"multipart/mixed"
    head.append(b"Content-Type: " + ctype + b'; boundary="' + b + b'"')
    body = b"".join(b"--" + b + b"\r\n" + p + b"\r\n" for p in parts) + b"--" + b + b"--\r\n"
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def corpus(seed: int, count: int) -> list:
    rng = random.Random(seed)
    return [message(rng, i) for i in range(count)]


def needles(rng: random.Random) -> str:
    """A needle: a word, a piece of one (substring semantics), two words, in any case."""
    word = rng.choice(WORDS + ["bob", "example", "jörg", "zoë", "renée"])
    kind = rng.random()
    if kind < 0.3 and len(word) > 3:
        a = rng.randrange(0, len(word) - 2)
        word = word[a:a + rng.randint(2, len(word) - a)]
    elif kind < 0.45:
        word = word + " " + rng.choice(WORDS)
    return rng.choice([word, word.upper(), word.lower(), word.title()])
