"""Seeded input generators for the parser fuzz tests: deeply nested, random and truncated
inputs, reproducible (each test names its seed), a few hundred cases each and fast.

``cases(rng, valid, openers, closers, atoms, n)`` mixes four kinds of input built from a
protocol's own tokens:

- *deep*: a prefix, then one opener repeated 10 to 100 000 times around an atom, closed or not;
- *random*: a few dozen tokens in random order;
- *truncated*: a valid input cut at a random byte;
- *mutated*: a valid input with random bytes replaced, inserted or deleted.
"""

from __future__ import annotations

import random
from typing import List, Sequence

DEPTHS = (10, 31, 32, 33, 63, 64, 65, 99, 100, 101, 200, 1000, 5000, 20000, 100000)


def deep(rng: random.Random, prefix: bytes, opener: bytes, closer: bytes, atom: bytes, depth: int,
         suffix: bytes = b"") -> bytes:
    closed = rng.random() < 0.5
    return prefix + opener * depth + atom + (closer * depth + suffix if closed else b"")


def rand_tokens(rng: random.Random, tokens: Sequence[bytes], count: int) -> bytes:
    return b"".join(rng.choice(tokens) for _ in range(count))


def truncated(rng: random.Random, valid: bytes) -> bytes:
    return valid[:rng.randrange(len(valid) + 1)]


def mutated(rng: random.Random, valid: bytes, noise: bytes) -> bytes:
    data = bytearray(valid)
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(3)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and pos < len(data):
            data[pos] = rng.choice(noise)
        elif op == 1:
            data[pos:pos] = bytes([rng.choice(noise)]) * rng.randrange(1, 50)
        elif pos < len(data):
            del data[pos:pos + rng.randrange(1, 10)]
    return bytes(data)


def cases(rng: random.Random, valid: Sequence[bytes], nests: Sequence[tuple], tokens: Sequence[bytes],
          n: int = 300, depths: Sequence[int] = DEPTHS, noise: bytes = b"()[]{}<>\"\\ *%:;,.=-_aZ09") -> List[bytes]:
    """``n`` inputs (more when the deep ones alone are more); ``nests`` are ``(prefix, opener,
    closer, atom[, suffix])`` for the deep ones: ``prefix + opener * depth + atom [+ closer *
    depth + suffix]``."""
    out = [deep(rng, nest[0], nest[1], nest[2], nest[3], d, *nest[4:]) for nest in nests for d in depths]
    while len(out) < n:
        kind = rng.randrange(3)
        if kind == 0:
            out.append(rand_tokens(rng, tokens, rng.randrange(1, 60)))
        elif kind == 1:
            out.append(truncated(rng, rng.choice(valid)))
        else:
            out.append(mutated(rng, rng.choice(valid), noise))
    return out
