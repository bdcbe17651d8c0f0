"""PostgreSQL's schema as its own tools show it, and those tools, for tests.

:func:`describeTable` renders what ``psql``'s ``\\d`` lists of a table (columns with type and
modifiers, indexes, check and foreign-key constraints, references to it, its parent) in the
form of the seed's listings, from the catalogs, so a schema can be compared with them fact by
fact. :func:`clientBinary` finds ``psql``, ``pg_dump`` and ``pg_restore``; :func:`libpqArgs`
turns a SQLAlchemy URL into their connection arguments.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import sqlalchemy as sa

from crashdb.test.util.pgserver import findPostgresBinDir

COLUMNS = sa.text(
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
    " pg_get_expr(d.adbin, d.adrelid)"
    " FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
    " WHERE a.attrelid = CAST(:table AS regclass) AND a.attnum > 0 AND NOT a.attisdropped"
    " ORDER BY a.attnum"
)
INDEXES = sa.text(
    "SELECT c.relname, i.indisprimary, i.indisunique, pg_get_indexdef(i.indexrelid, 0, true)"
    " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " WHERE i.indrelid = CAST(:table AS regclass)"
)
CONSTRAINTS = sa.text(
    "SELECT conname, pg_get_constraintdef(oid, true) FROM pg_constraint"
    " WHERE conrelid = CAST(:table AS regclass) AND contype IN ('c', 'f')"
)
REFERENCED_BY = sa.text(
    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid, true) FROM pg_constraint"
    " WHERE confrelid = CAST(:table AS regclass) AND contype = 'f'"
)
PARENT = sa.text(
    "SELECT p.relname, c.relispartition, pg_get_expr(c.relpartbound, c.oid)"
    " FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent"
    " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhrelid = CAST(:table AS regclass)"
)
PARTITION_KEY = sa.text("SELECT pg_get_partkeydef(CAST(:table AS regclass))")


def columnLine(name: str, kind: str, notnull: bool, default: str | None) -> str:
    """One column as the seed lists it: ``name | type | modifiers``."""
    modifiers = " ".join(part for part in (
        "not null" if notnull else "", f"default {default}" if default else "") if part)
    return f"{name} | {kind} | {modifiers}".rstrip()


def normalized(definition: str) -> str:
    """A fact without the parentheses and spacing that psql versions vary in."""
    return " ".join(definition.replace("(", " ").replace(")", " ").split())


def describeTable(conn: sa.Connection, table: str) -> tuple[list[str], set[str]]:
    """``(columns, facts)`` of ``table``: its column lines in order, and the set of everything
    else ``\\d`` shows, one string each (compare them ``normalized``)."""
    params = {"table": table}
    columns = [columnLine(*row) for row in conn.execute(COLUMNS, params)]
    facts = set()
    for name, primary, unique, definition in conn.execute(INDEXES, params):
        kind = "PRIMARY KEY, " if primary else "UNIQUE, " if unique else ""
        method = re.sub(r"^.* USING ", "", definition)
        facts.add(f'"{name}" {kind}{method}')
    for name, definition in conn.execute(CONSTRAINTS, params):
        facts.add(f'"{name}" {definition}')
    for source, name, definition in conn.execute(REFERENCED_BY, params):
        facts.add(f'TABLE "{source}" CONSTRAINT "{name}" {definition}')
    for parent, partition, bound in conn.execute(PARENT, params):
        facts.add(f"Partition of: {parent} {bound}" if partition else f"Inherits: {parent}")
    key = conn.execute(PARTITION_KEY, params).scalar_one()
    if key:
        facts.add(f"Partition key: {key}")
    return columns, facts


def clientBinary(name: str) -> str:
    """The path of PostgreSQL client program ``name`` (``psql``, ``pg_dump``...), from the
    server's binary directory or ``$PATH``; fails clearly when there is none."""
    bindir = findPostgresBinDir()
    path = os.path.join(bindir, name) if bindir else shutil.which(name)
    if path is None or not os.access(path, os.X_OK):
        raise RuntimeError(f"PostgreSQL's {name} is not installed (looked beside initdb and on"
                           " $PATH)")
    return path


def libpqArgs(url: str) -> tuple[list[str], dict[str, str]]:
    """Connection options and environment (the password) for a client program, from a URL."""
    parsed = sa.make_url(url)
    args = ["--dbname", parsed.database or ""]
    if parsed.host:
        args += ["--host", parsed.host]
    if parsed.port:
        args += ["--port", str(parsed.port)]
    if parsed.username:
        args += ["--username", parsed.username]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if parsed.password:
        env["PGPASSWORD"] = parsed.password
    host = parsed.query.get("host")  # a Unix socket directory, as ?host=/path
    if host:
        env["PGHOST"] = host if isinstance(host, str) else host[0]
    return args, env


def runClient(name: str, url: str, *args: str, stdin: str | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess:
    """Run client program ``name`` against the database at ``url``; its output, or an
    AssertionError with its stderr when it fails."""
    connection, env = libpqArgs(url)
    result = subprocess.run([clientBinary(name), *connection, *args], input=stdin,
                            capture_output=True, text=True, env=env, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{name} failed ({result.returncode}): {result.stderr}")
    return result
