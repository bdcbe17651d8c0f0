"""The databases crashdb runs on: an engine and a :class:`~crashdb.backends.base.Backend` for a
URL. Everything SQLite and PostgreSQL do differently lives in this package."""

from __future__ import annotations

import os
from collections.abc import Sequence

import sqlalchemy as sa

from crashdb.backends.base import Backend
from crashdb.backends.postgresql import PostgresBackend
from crashdb.backends.sqlite import SQLiteBackend
from crashdb.exceptions import CrashDBError, InvalidInputError

DEFAULT_URL = "sqlite:///crashdb.sqlite"

BACKENDS: dict[str, type[Backend]] = {
    SQLiteBackend.name: SQLiteBackend,
    PostgresBackend.name: PostgresBackend,
}


def resolveUrl(url: str | None) -> str:
    """The database URL: the caller's, else ``$CRASHDB_URL``, else the embedded default."""
    return url or os.environ.get("CRASHDB_URL") or DEFAULT_URL


def resolveReplicaUrls(urls: Sequence[str] | str | None) -> list[str]:
    """The replica URLs: the caller's, else ``$CRASHDB_REPLICA_URLS`` (comma-separated)."""
    if urls is None:
        urls = os.environ.get("CRASHDB_REPLICA_URLS", "")
    if isinstance(urls, str):
        urls = urls.split(",")
    return [url.strip() for url in urls if url.strip()]


def parseUrl(url: str, anyBackend: bool = False) -> sa.URL:
    """``url`` parsed, a bare ``postgresql://`` meaning psycopg2 (SQLAlchemy 2.1 would pick
    psycopg 3 for it). Every URL crashdb opens goes through here, the legacy import's source
    too (which, with ``anyBackend``, may be any database SQLAlchemy reaches). InvalidInputError
    for a malformed URL or an unsupported backend."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as error:
        raise InvalidInputError(f"not a database URL: {url!r}", field="db_url") from error
    backend = parsed.get_backend_name()
    if backend not in BACKENDS and not anyBackend:
        raise InvalidInputError(
            f"unsupported database {backend!r} in {url!r}: use sqlite:/// or postgresql://",
            field="db_url",
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


def createEngine(url: str, threads: int | None = None) -> tuple[sa.Engine, Backend, int]:
    """An engine, its backend and the thread count to use for ``url``.

    Raises InvalidInputError for a malformed URL or an unsupported backend, and CrashDBError for
    a missing driver; no connection is made.
    """
    parsed = parseUrl(url)
    factory = BACKENDS[parsed.get_backend_name()]
    try:
        engine, threads = factory.createEngine(parsed, threads)
    except ImportError as error:
        raise CrashDBError(
            f"the driver for {factory.name} is not installed ({error}); "
            "install crashdb[postgresql] for PostgreSQL"
        ) from error
    except sa.exc.NoSuchModuleError as error:
        raise InvalidInputError(f"unknown database driver in {url!r}", field="db_url") from error
    return engine, factory(engine), threads


def backendFor(engine: sa.Engine) -> Backend:
    """The backend of an engine made elsewhere (migrations, tests)."""
    return BACKENDS[engine.dialect.name](engine)


__all__ = ["BACKENDS", "DEFAULT_URL", "Backend", "PostgresBackend", "SQLiteBackend",
           "backendFor", "createEngine", "parseUrl", "resolveReplicaUrls", "resolveUrl"]
