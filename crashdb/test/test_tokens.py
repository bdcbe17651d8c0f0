"""Behaviour of the ``tokens`` component: API tokens stored as SHA-256 hashes only."""

from __future__ import annotations

import hashlib

import pytest
import pytest_twisted
import sqlalchemy as sa

from crashdb import model
from crashdb.exceptions import InvalidInputError


@pytest_twisted.inlineCallbacks
def test_a_created_token_checks_and_only_its_hash_is_stored(db):
    token = yield db.tokens.createToken("alice")
    assert len(token) >= 40
    assert (yield db.tokens.checkToken(token)) == "alice"

    def stored(conn):
        return conn.execute(sa.select(model.api_tokens)).mappings().all()

    rows = yield db.pool.do(stored)
    assert len(rows) == 1
    assert rows[0]["token_sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(rows)


@pytest_twisted.inlineCallbacks
def test_wrong_empty_and_foreign_tokens_do_not_check(db):
    token = yield db.tokens.createToken("alice")
    other = yield db.tokens.createToken("bob")
    assert token != other
    assert (yield db.tokens.checkToken(other)) == "bob"
    assert (yield db.tokens.checkToken(token[:-1])) is None
    assert (yield db.tokens.checkToken(token + "x")) is None
    assert (yield db.tokens.checkToken("")) is None
    assert (yield db.tokens.checkToken(None)) is None
    assert (yield db.tokens.checkToken(hashlib.sha256(token.encode()).hexdigest())) is None


@pytest_twisted.inlineCallbacks
def test_list_shows_names_and_times_never_hashes(db):
    yield db.tokens.createToken("zed")
    yield db.tokens.createToken("alice")
    tokens = yield db.tokens.getTokens()
    assert [t["name"] for t in tokens] == ["alice", "zed"]
    assert set(tokens[0]) == {"name", "created_at"}
    assert tokens[0]["created_at"].utcoffset().total_seconds() == 0


@pytest_twisted.inlineCallbacks
def test_revoked_token_stops_working(db):
    token = yield db.tokens.createToken("alice")
    assert (yield db.tokens.revokeToken("alice")) is True
    assert (yield db.tokens.checkToken(token)) is None
    assert (yield db.tokens.revokeToken("alice")) is False
    assert (yield db.tokens.getTokens()) == []


@pytest_twisted.inlineCallbacks
def test_names_are_unique_and_checked(db):
    yield db.tokens.createToken("alice")
    with pytest.raises(InvalidInputError) as caught:
        yield db.tokens.createToken("alice")
    assert caught.value.field == "name"
    for bad in ("", "  ", "x" * 65, 7):
        with pytest.raises(InvalidInputError):
            yield db.tokens.createToken(bad)
    assert [t["name"] for t in (yield db.tokens.getTokens())] == ["alice"]
