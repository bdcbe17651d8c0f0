"""API tokens of the web front end (SPEC 16): who may see personal data.

A token is printed once, when it is created; the database keeps only its SHA-256, so a copy of
the database (a backup, a replica) hands out no working token. A presented token is checked
against every stored hash with :func:`hmac.compare_digest`, which takes the same time whether
the first or the last character differs, and the loop never stops early: the answer's timing
says nothing about how close a guess came.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets
from typing import Any

import sqlalchemy as sa
from twisted.internet import defer

from crashdb import model
from crashdb.base import DBConnectorComponent
from crashdb.exceptions import InvalidInputError
from crashdb.validation import requireName, validatesInput

UTC = datetime.UTC
TOKEN_BYTES = 32  # 256 random bits, printed as 43 URL-safe characters


def tokenHash(token: str) -> str:
    """The hex SHA-256 of ``token``, as stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokensConnectorComponent(DBConnectorComponent):
    """Named API tokens: create (printed once), list, revoke, check."""

    @validatesInput
    def createToken(self, name: str, now: datetime.datetime | None = None) -> defer.Deferred:
        """Make a new token called ``name``; Deferred of the token itself, which is not stored
        and cannot be read back. InvalidInputError if ``name`` is taken."""
        requireName(name, "name", model.api_tokens.c.name)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        created = now or datetime.datetime.now(UTC)
        tokens = model.api_tokens

        def thd(conn: sa.Connection) -> str:
            insert = (
                self.db.backend.insert(tokens)
                .values(name=name, token_sha256=tokenHash(token), created_at=created)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            if conn.execute(insert).rowcount != 1:
                raise InvalidInputError("a token of that name exists", field="name")
            return token

        return self.db.pool.do(thd)

    def getTokens(self) -> defer.Deferred:
        """Deferred of ``[{name, created_at}]`` ordered by name (never a hash)."""
        tokens = model.api_tokens

        def thd(conn: sa.Connection) -> list[dict[str, Any]]:
            query = sa.select(tokens.c.name, tokens.c.created_at).order_by(tokens.c.name)
            return self.rowsToDicts(conn.execute(query))

        return self.db.pool.doRead(thd)

    @validatesInput
    def revokeToken(self, name: str) -> defer.Deferred:
        """Delete the token called ``name``; Deferred of True if there was one."""
        requireName(name, "name", model.api_tokens.c.name)
        tokens = model.api_tokens

        def thd(conn: sa.Connection) -> bool:
            return conn.execute(sa.delete(tokens).where(tokens.c.name == name)).rowcount == 1

        return self.db.pool.do(thd)

    def checkToken(self, token: str | None) -> defer.Deferred:
        """Deferred of the name of the stored token equal to ``token``, or None: every stored
        hash is compared in constant time, and all of them are compared. It reads the primary,
        never a replica, so a revoked token stops working at once."""
        if not isinstance(token, str) or not token:
            return defer.succeed(None)
        presented = tokenHash(token).encode("ascii")
        tokens = model.api_tokens

        def thd(conn: sa.Connection) -> str | None:
            found = None
            for name, stored in conn.execute(sa.select(tokens.c.name, tokens.c.token_sha256)):
                if hmac.compare_digest(presented, stored.encode("ascii")):
                    found = name
            return found

        return self.db.pool.doRead(thd)
