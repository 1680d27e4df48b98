"""Password hashing with libpass's ``passlib`` CryptContext.

argon2 is the default; legacy schemes (what Dovecot and Zarafa installs commonly carry:
SHA-512/SHA-256/MD5 crypt, salted SHA-1 LDAP style) are verified and flagged for rehash, so an
imported account moves to argon2 at its next successful login.  Every function here is CPU
heavy: call it from the CPU pool, never the reactor thread.
"""

from __future__ import annotations

import functools
from typing import Optional

from passlib.context import CryptContext

CONTEXT = CryptContext(
    schemes=["argon2", "sha512_crypt", "sha256_crypt", "md5_crypt", "ldap_salted_sha1"],
    default="argon2",
    # OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): ~25 ms a login on one core.  The
    # library default (64 MiB, 3 passes, 4 lanes) costs ~250 ms on a 2-core server, and IMAP
    # clients log in several connections at once.  Stored hashes with other parameters still
    # verify and are rehashed to these at the next login.
    argon2__memory_cost=19456,
    argon2__rounds=2,
    argon2__parallelism=1,
    deprecated=["sha512_crypt", "sha256_crypt", "md5_crypt", "ldap_salted_sha1"],
)

@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Verified when the account is unknown or has no password, so a failure takes as long
    either way.  Made on first use, not at import: the `haven` commands that hash nothing
    should not pay for an argon2 hash at start-up."""
    return CONTEXT.hash("haven-dummy-password-for-constant-time")


def hash_password(password: str) -> str:
    return CONTEXT.hash(password)


def verify_password(password: str, stored: Optional[str]) -> tuple[bool, Optional[str]]:
    """``(ok, new_hash)``: new_hash is set when the stored hash should be upgraded."""
    if not stored:
        CONTEXT.verify(password, _dummy_hash())
        return False, None
    try:
        ok, new_hash = CONTEXT.verify_and_update(password, stored)
    except (ValueError, TypeError):  # unknown or malformed stored hash
        CONTEXT.verify(password, _dummy_hash())
        return False, None
    return ok, new_hash
