"""PostgreSQL: declarative range partitions attached under a bounded lock timeout, COPY for bulk
writes, advisory locks, ``FOR UPDATE SKIP LOCKED``."""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from crashdb import model
from crashdb.backends import citus
from crashdb.backends.base import Backend, WeekWork
from crashdb.base import Rows
from crashdb.bulk import copytext
from crashdb.exceptions import CrashDBError

log = logging.getLogger("crashdb.backends")

ADVISORY_NAMESPACE = 0x63726462 & 0x7FFFFFFF  # "crdb": crashdb's advisory locks
UPGRADE_LOCK_KEY = 0
LOCK_TIMEOUT_MS = 2000
LOCK_ATTEMPTS = 10
WEEK = datetime.timedelta(days=7)


class PostgresBackend(Backend):
    """PostgreSQL 13 or newer, through psycopg2."""

    name = "postgresql"
    routesPartitions = True
    #: serialization failure, deadlock, too many connections: the transaction was rolled back
    RETRYABLE_CODES = ("40001", "40P01", "53300")
    #: admin/crash shutdown, cannot connect now (starting up, shutting down, recovering)
    LOST_CODES = ("57P01", "57P02", "57P03")
    #: connection failures that waiting will not cure: fail at once instead of retrying
    PERMANENT_CONNECT_ERRORS = ("authentication failed", "does not exist", "pg_hba.conf",
                                "no password supplied")
    #: children up to this size (heap bytes) are counted exactly by ``childSizes``
    EXACT_COUNT_BYTES = 32 * 1048576
    #: below this many rows a multi-row INSERT beats COPY's extra round trip
    COPY_MIN_ROWS = 16
    #: True once ``detectDistribution`` has asked the database whether it is a Citus coordinator
    _distributionKnown = False

    @classmethod
    def createEngine(cls, url: sa.URL, threads: int | None) -> tuple[sa.Engine, int]:
        threads = threads or 10
        engine = sa.create_engine(
            url,
            pool_size=threads,
            max_overflow=threads,
            # No liveness ping at checkout: it is a round trip on every call (some 15% of the
            # claim path's throughput in bench/claims.py). A connection found dead by its first
            # statement is retried by the pool instead, nothing having been committed.
            pool_pre_ping=False,
            pool_recycle=3600,
            connect_args={
                "options": "-c timezone=UTC",
                "connect_timeout": 10,
                "application_name": "crashdb",
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
            },
        )
        return engine, threads

    def insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def skipLocked(self, select: sa.Select) -> sa.Select:
        return select.with_for_update(skip_locked=True)

    def inList(self, column: sa.ColumnElement, name: str) -> sa.ColumnElement[bool]:
        # one array parameter: SQLAlchemy re-renders an expanding IN on every execution
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))

    def codePointOrder(self, expression: sa.ColumnElement) -> sa.ColumnElement:
        return expression.collate("C")  # byte order of UTF-8: code point order

    def jsonEquals(self, column: sa.ColumnElement, key: str, value: Any) -> sa.ColumnElement[bool]:
        """JSONB containment, which the type-aware comparison of JSON values gives for free."""
        return sa.type_coerce(column, postgresql.JSONB()).contains({key: value})

    def epochMicroseconds(self, when: sa.ColumnElement) -> sa.ColumnElement[int]:
        return sa.cast(sa.extract("epoch", when) * 1_000_000, sa.BigInteger)

    def greatest(self, *values: sa.ColumnElement) -> sa.ColumnElement[float]:
        return sa.func.greatest(*values, type_=sa.Double)

    def squareRoot(self, conn: sa.Connection, value: sa.ColumnElement) -> sa.ColumnElement[float]:
        return sa.func.sqrt(value, type_=sa.Double)

    def caseInsensitiveLike(self, term: sa.ColumnElement, pattern: str
                            ) -> sa.ColumnElement[bool]:
        # ILIKE under the "C" collation folds ASCII letters only, as SQLite's LIKE does
        return term.collate("C").ilike(pattern, escape="\\")

    def jsonText(self, column: sa.ColumnElement, key: str) -> tuple[sa.ColumnElement[str], Any]:
        value = sa.type_coerce(column, postgresql.JSONB())[key]
        # ->> gives arrays and objects as JSON text too: the second condition leaves them out.
        # Apart, so that a filter tests it only on rows whose text already matched.
        return value.astext, sa.func.jsonb_typeof(value).not_in(("array", "object"))

    def sameWeek(self, a: sa.ColumnElement, b: sa.ColumnElement) -> sa.ColumnElement[bool]:
        return sa.func.date_trunc("week", a, "UTC") == sa.func.date_trunc("week", b, "UTC")

    def utcDay(self, column: sa.ColumnElement) -> sa.ColumnElement:
        return sa.cast(sa.func.timezone("UTC", column), sa.Date)

    def isRetryable(self, error: sa.exc.DBAPIError) -> bool:
        if getattr(error.orig, "pgcode", None) in self.RETRYABLE_CODES:
            return True
        if not self.isConnectionLost(error):
            return False
        message = str(error.orig)
        return not any(text in message for text in self.PERMANENT_CONNECT_ERRORS)

    def isConnectionLost(self, error: sa.exc.DBAPIError) -> bool:
        if error.connection_invalidated:
            return True
        code = getattr(error.orig, "pgcode", None)
        if code is None:  # raised by libpq on our side: no server connection to speak of
            return isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError)
        return code.startswith("08") or code in self.LOST_CODES

    def isMissingTable(self, error: sa.exc.DBAPIError) -> bool:
        return getattr(error.orig, "pgcode", None) == "42P01"

    def isUniqueViolation(self, error: sa.exc.DBAPIError) -> bool:
        code = getattr(error.orig, "pgcode", None)
        if code == "23505":
            return True
        # Citus passes a worker's violation during a COPY on as an internal error
        return code == "XX000" and str(error.orig).startswith(
            "duplicate key value violates unique constraint")

    def isMissingPartition(self, error: sa.exc.DBAPIError) -> bool:
        if self.isMissingTable(error):
            return True
        # "no partition of relation ... found for row": a check violation naming no constraint
        diagnostics = getattr(error.orig, "diag", None)
        return (getattr(error.orig, "pgcode", None) == "23514"
                and getattr(diagnostics, "constraint_name", None) is None)

    def bulkInsert(
        self, conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Rows
    ) -> None:
        """``COPY`` for many rows (see ``copyRows``), an INSERT for a few."""
        if len(rows) < self.COPY_MIN_ROWS:
            super().bulkInsert(conn, table, columns, rows)
        else:
            self.copyRows(conn, table, columns, rows)

    def copyRows(
        self, conn: sa.Connection, table: sa.Table, columns: Sequence[str],
        rows: Rows, into: str | None = None,
    ) -> None:
        """``COPY table (columns) FROM STDIN`` of ``rows`` (values as ``table``'s types, in the
        text format of :mod:`crashdb.bulk.copytext`), into the table named ``into`` if given, in
        ``conn``'s transaction. Rows (or their lines, from a :class:`copytext.CopySource`) are
        made and sent as the server takes them; an exception raised by ``rows`` aborts the COPY
        and is raised as it was. Database errors arrive as SQLAlchemy's ``DBAPIError``, as from
        ``conn.execute``; a lost connection is invalidated."""
        quote = conn.dialect.identifier_preparer.quote
        target = quote(into or table.name)
        statement = f"COPY {target} ({', '.join(map(quote, columns))}) FROM STDIN"
        formatter = copytext.formatter(table, tuple(columns))
        data = copytext.CopyReader(copytext.lines(formatter, rows))
        dbapi_connection: Any = conn.connection.dbapi_connection
        dbapi = conn.dialect.loaded_dbapi
        cursor = dbapi_connection.cursor()
        try:
            cursor.copy_expert(statement, data, size=copytext.CHUNK)
        except dbapi.Error as error:
            if data.error is not None:  # making the rows failed: the COPY was aborted for it
                raise data.error from None
            lost = conn.dialect.is_disconnect(error, dbapi_connection, cursor)
            if lost:
                conn.invalidate(error)
            raise sa.exc.DBAPIError.instance(
                statement, None, error, dbapi.Error, connection_invalidated=lost,
                dialect=conn.dialect,
            ) from error
        finally:
            if not cursor.closed:
                cursor.close()

    def insertNew(
        self, conn: sa.Connection, table: sa.Table, columns: Sequence[str],
        rows: Rows, key: str,
    ) -> set[Any]:
        """Many rows go through a temporary staging table filled by COPY, then one
        ``INSERT ... SELECT ... ON CONFLICT (key) DO NOTHING RETURNING key``."""
        if len(rows) < self.COPY_MIN_ROWS:
            return super().insertNew(conn, table, columns, rows, key)
        quote = conn.dialect.identifier_preparer.quote
        staging = quote(f"crashdb_staging_{table.name}")
        names = ", ".join(map(quote, columns))
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {staging} (LIKE {quote(table.name)}) ON COMMIT DROP"
        )
        self.copyRows(conn, table, columns, rows, into=staging)
        inserted = conn.exec_driver_sql(
            f"INSERT INTO {quote(table.name)} ({names}) SELECT {names} FROM {staging}"
            f" ON CONFLICT ({quote(key)}) DO NOTHING RETURNING {quote(key)}"
        )
        keys = {value for (value,) in inserted}
        conn.exec_driver_sql(f"DROP TABLE {staging}")
        return keys

    def reserveIds(self, conn: sa.Connection, name: str, count: int) -> Sequence[int]:
        if count == 0:
            return []
        # one row holding an array: parsed by the driver in C, not row by row in Python
        return conn.execute(
            sa.text(f"SELECT array_agg(nextval('{name}_id_seq')) FROM generate_series(1, :n)"),
            {"n": count},
        ).scalar_one()

    def sharedIdDefault(self, parent: sa.Table, column: sa.Column) -> dict[str, Any]:
        sequence = column.default
        assert isinstance(sequence, sa.Sequence), "a shared id comes from the parent's sequence"
        return {"server_default": sequence.next_value()}  # the seed's nextval('reports_id_seq')

    def advanceIds(self, conn: sa.Connection, table: str, past: int) -> None:
        sequence: str | None = "reports_id_seq"
        if table != "reports":
            sequence = conn.execute(
                sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}
            ).scalar()
        if sequence:
            conn.execute(
                sa.text("SELECT setval(:s, GREATEST(:past, nextval(:s)))"),
                {"s": sequence, "past": past},
            )

    def childNames(self, conn: sa.Connection) -> Sequence[str]:
        rows = conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_inherits i"
                " JOIN pg_class c ON c.oid = i.inhrelid"
                " JOIN pg_class p ON p.oid = i.inhparent"
                " WHERE p.relnamespace = current_schema()::regnamespace"
                " AND p.relname = ANY(:parents)"
            ),
            {"parents": list(model.PARTITIONED_TABLES)},
        )
        return [name for (name,) in rows]

    @staticmethod
    def timestampLiteral(when: datetime.datetime) -> str:
        return f"'{when:%Y-%m-%d %H:%M:%S+00}'::timestamp with time zone"

    def runWeekDDL(
        self, engine: sa.Engine, monday: datetime.datetime, names: list[str], work: WeekWork
    ) -> list[str]:
        """Under the week's advisory lock and a short lock timeout, retried while other
        sessions hold conflicting locks: readers and writers of other weeks never wait long."""
        key = int(f"{monday:%Y%m%d}")
        for attempt in range(1, LOCK_ATTEMPTS + 1):
            try:
                with engine.begin() as conn:
                    self.detectDistribution(conn)  # known before the work builds tables
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_NAMESPACE, key)))
                    existing = conn.execute(
                        sa.text(
                            "SELECT relname FROM pg_class WHERE relname = ANY(:names)"
                            " AND relnamespace = current_schema()::regnamespace"
                        ),
                        {"names": names},
                    )
                    return work(conn, {name for (name,) in existing})
            except sa.exc.OperationalError as error:
                if getattr(error.orig, "pgcode", None) != "55P03" or attempt == LOCK_ATTEMPTS:
                    raise
                log.warning("partition DDL for week %s waited too long for a lock; retrying",
                            f"{monday:%Y%m%d}")
                time.sleep(0.1 * attempt)
        raise CrashDBError("unreachable")  # pragma: no cover

    def attachChild(
        self, conn: sa.Connection, parent: str, child: str, monday: datetime.datetime
    ) -> None:
        # created apart, then attached: the parent is only SHARE UPDATE EXCLUSIVE locked, so
        # readers and writers of other weeks carry on
        end = monday + WEEK
        bounds = f"FROM ('{monday:%Y-%m-%d} 00:00:00+00') TO ('{end:%Y-%m-%d} 00:00:00+00')"
        conn.exec_driver_sql(
            f'ALTER TABLE "{parent}" ATTACH PARTITION "{child}" FOR VALUES {bounds}')

    def detachChild(self, conn: sa.Connection, parent: str, child: str) -> None:
        conn.exec_driver_sql(f'ALTER TABLE "{parent}" DETACH PARTITION "{child}"')

    def detectDistribution(self, conn: sa.Connection) -> str | None:
        if not self._distributionKnown:
            self.distributionColumn = citus.DISTRIBUTION_COLUMN if citus.hasCitus(conn) else None
            self._distributionKnown = True
        return self.distributionColumn

    def afterUpgrade(self, conn: sa.Connection) -> list[str]:
        if self.detectDistribution(conn) is None:
            return []
        return citus.distribute(conn, holdsWeeks=bool(self.childNames(conn)))

    def childSizes(
        self, conn: sa.Connection, names: list[str]
    ) -> dict[str, tuple[int | None, int | None]]:
        """Rows are counted exactly in a child of at most ``EXACT_COUNT_BYTES`` (a week never
        analyzed is often one just filled, where an estimate would say nothing), else the
        planner's estimate, else None (never analyzed: counting would read it whole). On
        Citus the sizes are the shards' on the workers (the coordinator's table is empty)."""
        size = "citus_" if self.detectDistribution(conn) else "pg_"
        rows = conn.execute(
            sa.text(
                f"SELECT c.relname, c.reltuples::bigint, {size}relation_size(c.oid),"
                f" {size}total_relation_size(c.oid)"
                " FROM pg_class c WHERE c.relname = ANY(:names)"
                " AND c.relnamespace = current_schema()::regnamespace"
            ),
            {"names": names},
        )
        quote = conn.dialect.identifier_preparer.quote
        sizes: dict[str, tuple[int | None, int | None]] = {}
        for name, estimate, heap, size in rows.all():
            count: int | None = None if estimate < 0 else estimate
            if heap <= self.EXACT_COUNT_BYTES:
                count = conn.exec_driver_sql(f"SELECT count(*) FROM {quote(name)}").scalar_one()
            sizes[name] = (count, size)
        return sizes

    supportsReplicas = True
    #: a standby that has replayed all it received while streaming is current; otherwise its
    #: lag is the age of the last transaction it replayed (None: none replayed yet)
    REPLICA_LAG = (
        "SELECT CASE"
        " WHEN NOT pg_is_in_recovery() THEN 0"
        " WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()"
        "  AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') THEN 0"
        " ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END"
    )

    def replicaLag(self, conn: sa.Connection) -> float | None:
        return conn.exec_driver_sql(self.REPLICA_LAG).scalar()

    def lockForUpgrade(self, conn: sa.Connection) -> None:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_NAMESPACE, UPGRADE_LOCK_KEY)))
