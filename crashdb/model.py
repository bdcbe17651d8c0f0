"""The model: the single description of crashdb's schema, in SQLAlchemy Core.

Migrations build the database; a test proves that an upgraded database equals this model on
every backend. Partitioned tables are declared here as parents (columns only, as in the seeds:
"each child table holds its own indexes while none exist on the parent tables") together with a
:class:`ChildSpec` from which every weekly child's DDL is derived.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

UTC = datetime.UTC


class UTCDateTime(sa.types.TypeDecorator):
    """``timestamp with time zone`` that always hands back aware UTC datetimes.

    SQLite stores no zone, so values are normalised to UTC on the way in and marked UTC on the
    way out; PostgreSQL values are converted to UTC whatever the session's time zone.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: crashdb needs timezone-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):  # a raw string from a SQLite expression (e.g. min/max)
            value = datetime.datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

metadata = sa.MetaData()

# -- crash data (partitioned weekly on date_processed) --------------------------------------------

# PostgreSQL sequence behind reports.id: ids are unique across every weekly partition.
reports_id_seq = sa.Sequence("reports_id_seq", metadata=metadata)

# One processed crash report; the seed's columns, types and lengths. On PostgreSQL the sequence
# is the id's default in the database too, on the parent (migration 003) and every child
# (CHILD_SPECS' shared_id), as in the seed, so writers that are not crashdb (psql, COPY) need
# not name the column; SQLite has no sequences.
reports = sa.Table(
    "reports",
    metadata,
    sa.Column("id", sa.Integer, reports_id_seq, server_default=sa.FetchedValue(),
              nullable=False),
    sa.Column("client_crash_date", UTCDateTime),
    sa.Column("date_processed", UTCDateTime),
    sa.Column("uuid", sa.String(50), nullable=False),
    sa.Column("product", sa.String(30)),
    sa.Column("version", sa.String(16)),
    sa.Column("build", sa.String(30)),
    sa.Column("signature", sa.String(255)),
    sa.Column("url", sa.String(255)),
    sa.Column("install_age", sa.Integer),
    sa.Column("last_crash", sa.Integer),
    sa.Column("uptime", sa.Integer),
    sa.Column("cpu_name", sa.String(100)),
    sa.Column("cpu_info", sa.String(100)),
    sa.Column("reason", sa.String(255)),
    sa.Column("address", sa.String(20)),
    sa.Column("os_name", sa.String(100)),
    sa.Column("os_version", sa.String(100)),
    sa.Column("email", sa.String(100)),
    sa.Column("user_id", sa.String(50)),
    sa.Column("started_datetime", UTCDateTime),
    sa.Column("completed_datetime", UTCDateTime),
    sa.Column("success", sa.Boolean),
    sa.Column("truncated", sa.Boolean),
    sa.Column("processor_notes", sa.Text),
    sa.Column("user_comments", sa.String(1024)),
    sa.Column("app_notes", sa.String(1024)),
    sa.Column("distributor", sa.String(20)),
    sa.Column("distributor_version", sa.String(20)),
    sa.Column("topmost_filenames", sa.Text),
    sa.Column("addons_checked", sa.Boolean),
    sa.Column("flash_version", sa.Text),
    sa.Column("hangid", sa.Text),
    sa.Column("process_type", sa.Text),
    sa.Column("release_channel", sa.Text),
    sa.Column("productid", sa.Text),
)

# Extensions (add-ons) installed when a report's crash happened; extension_key counts 0, 1, 2...
extensions = sa.Table(
    "extensions",
    metadata,
    sa.Column("report_id", sa.Integer, nullable=False),
    sa.Column("date_processed", UTCDateTime),
    sa.Column("extension_key", sa.Integer, nullable=False),
    sa.Column("extension_id", sa.Text, nullable=False),
    sa.Column("extension_version", sa.Text),
    sa.Column("uuid", sa.String(50)),  # the report's: the distribution column on Citus
)

# Which plugin (and which version of it) a report's process had loaded.
plugins_reports = sa.Table(
    "plugins_reports",
    metadata,
    sa.Column("report_id", sa.Integer, nullable=False),
    sa.Column("plugin_id", sa.Integer, nullable=False),
    sa.Column("date_processed", UTCDateTime),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("uuid", sa.String(50)),  # the report's: the distribution column on Citus
)

# The crash's submitted metadata as JSON, stored before processing (so no foreign key).
raw_crashes = sa.Table(
    "raw_crashes",
    metadata,
    sa.Column("uuid", sa.String(50), nullable=False),
    sa.Column("date_processed", UTCDateTime),
    sa.Column("raw_crash", JSONType, nullable=False),
)

# -- crash data (not partitioned) -----------------------------------------------------------------

# Known plugins, found-or-created by (filename, name).
plugins = sa.Table(
    "plugins",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.UniqueConstraint("filename", "name", name="plugins_filename_name_key"),
)

# -- process control ------------------------------------------------------------------------------

# Processors: the workers that claim jobs; heartbeats keep last_active fresh.
processors = sa.Table(
    "processors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("last_active", UTCDateTime),
    sa.UniqueConstraint("name", name="processors_name_key"),
)

# The processing queue: one job per crash uuid, claimed by at most one processor at a time.
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("uuid", sa.String(50), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("queued_at", UTCDateTime, nullable=False),
    sa.Column(
        "claimed_by_processorid",
        sa.Integer,
        sa.ForeignKey("processors.id", name="jobs_claimed_by_processorid_fkey"),
    ),
    sa.Column("claimed_at", UTCDateTime),
    sa.Column("complete", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("success", sa.Boolean),
    sa.Column("message", sa.Text),
    sa.UniqueConstraint("uuid", name="jobs_uuid_key"),
    sa.Index("jobs_claimed_by_processorid_idx", "claimed_by_processorid"),
    sa.Index("jobs_completed_at_idx", "completed_at"),
)
# what claimNextJobs scans: incomplete, unclaimed jobs in claim order
sa.Index(
    "jobs_unclaimed_idx",
    jobs.c.priority.desc(),
    jobs.c.queued_at,
    jobs.c.id,
    postgresql_where=sa.text("NOT complete AND claimed_by_processorid IS NULL"),
    sqlite_where=sa.text("NOT complete AND claimed_by_processorid IS NULL"),
)

# -- aggregate reporting --------------------------------------------------------------------------

# Top crashers by signature: one row per (UTC day, product, version, signature), rolled up daily.
tcbs = sa.Table(
    "tcbs",
    metadata,
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("product", sa.String(30), nullable=False),
    sa.Column("version", sa.String(16), nullable=False),
    sa.Column("signature", sa.String(255), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("win_count", sa.Integer, nullable=False),
    sa.Column("mac_count", sa.Integer, nullable=False),
    sa.Column("lin_count", sa.Integer, nullable=False),
    sa.Column("hang_count", sa.Integer, nullable=False),
    sa.Column("startup_count", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("day", "product", "version", "signature", name="tcbs_pkey"),
    sa.Index("tcbs_product_day_idx", "product", "day"),
)

# -- product versions -----------------------------------------------------------------------------

# Canonical versions of each product (SPEC 11).
product_versions = sa.Table(
    "product_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("product", sa.String(30), nullable=False),
    sa.Column("version", sa.String(16), nullable=False),
    sa.UniqueConstraint("product", "version", name="product_versions_product_version_key"),
)

# Fuzzy version strings of a product ("4.0 Beta 1", "4.0b1") mapped to a canonical version.
version_aliases = sa.Table(
    "version_aliases",
    metadata,
    sa.Column("product", sa.String(30), nullable=False),
    sa.Column("alias", sa.Text, nullable=False),
    sa.Column(
        "version_id",
        sa.Integer,
        sa.ForeignKey(
            "product_versions.id", name="version_aliases_version_id_fkey", ondelete="CASCADE"
        ),
        nullable=False,
    ),
    sa.PrimaryKeyConstraint("product", "alias", name="version_aliases_pkey"),
    sa.Index("version_aliases_version_id_idx", "version_id"),
)

# -- signatures (SPEC 13) -------------------------------------------------------------------------

# Each non-empty signature's lifecycle: first and last report, smallest build (min/max merges, so
# days roll up in any order).
signatures = sa.Table(
    "signatures",
    metadata,
    sa.Column("signature", sa.String(255), nullable=False),
    sa.Column("first_report", UTCDateTime, nullable=False),
    sa.Column("first_build", sa.String(30)),
    sa.Column("last_report", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint("signature", name="signatures_pkey"),
)

# The same lifecycle per (signature, product, version); version '' for reports without one.
signature_versions = sa.Table(
    "signature_versions",
    metadata,
    sa.Column("signature", sa.String(255), nullable=False),
    sa.Column("product", sa.String(30), nullable=False),
    sa.Column("version", sa.String(16), nullable=False),
    sa.Column("first_report", UTCDateTime, nullable=False),
    sa.Column("first_build", sa.String(30)),
    sa.Column("last_report", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint("signature", "product", "version", name="signature_versions_pkey"),
    # getNewSignatures: the signatures first seen for a product in a period
    sa.Index("signature_versions_product_first_report_idx", "product", "first_report"),
)

# Per UTC day, how many of a signature's reports (of a product and version, NULL where the
# reports have none) have each term of each field (crashdb.summaries.SIGNATURE_FIELDS): what a
# signature's summary and correlations read instead of the reports (seed: Socorro's
# signature_summary_* tables). No key: a day is deleted and rewritten whole under its
# rollup_days row's lock, and term is NULL for reports lacking the field.
signature_facets = sa.Table(
    "signature_facets",
    metadata,
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("signature", sa.String(255), nullable=False),
    sa.Column("product", sa.String(30)),
    sa.Column("version", sa.String(16)),
    sa.Column("field", sa.String(20), nullable=False),
    sa.Column("term", sa.Text),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Index("signature_facets_signature_day_idx", "signature", "day"),
    sa.Index("signature_facets_day_idx", "day"),
)

# The same per (day, product, version) over all of a product's reports, for the fields a
# correlation compares (crashdb.summaries.PRODUCT_FIELDS): the baseline of getCorrelations.
product_facets = sa.Table(
    "product_facets",
    metadata,
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("product", sa.String(30), nullable=False),
    sa.Column("version", sa.String(16)),
    sa.Column("field", sa.String(20), nullable=False),
    sa.Column("term", sa.Text),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Index("product_facets_product_day_idx", "product", "day"),
    sa.Index("product_facets_day_idx", "day"),
)

# Which days a rollup whose tables hold whole days has covered, and when it last ran: reads
# take those days from the rollup and every other day from the reports.
rollup_days = sa.Table(
    "rollup_days",
    metadata,
    sa.Column("rollup", sa.String(30), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("rolled_at", UTCDateTime, nullable=False),
    sa.PrimaryKeyConstraint("rollup", "day", name="rollup_days_pkey"),
)

# -- crash rates (SPEC 14) ------------------------------------------------------------------------

# Active daily users per (UTC day, product, version), fed from the products' usage pings.
product_adu = sa.Table(
    "product_adu",
    metadata,
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("product", sa.String(30), nullable=False),
    sa.Column("version", sa.String(16), nullable=False),
    sa.Column("adu", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("day", "product", "version", name="product_adu_pkey"),
    sa.CheckConstraint("adu >= 0", name="product_adu_adu_check"),
    sa.Index("product_adu_product_day_idx", "product", "day"),
)

# The fraction (0 < throttle <= 1) of a product's crashes the collector keeps; 1 when absent.
product_throttles = sa.Table(
    "product_throttles",
    metadata,
    sa.Column("product", sa.String(30), primary_key=True),
    sa.Column("throttle", sa.Double, nullable=False),
    sa.CheckConstraint(
        "throttle > 0 AND throttle <= 1", name="product_throttles_throttle_check"
    ),
)

# -- the web front end ----------------------------------------------------------------------------

# API tokens of `crashdb serve` (SPEC 16): only each token's SHA-256 is stored, never the token.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("token_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("token_sha256", name="api_tokens_token_sha256_key"),
)

# -- SQLite only ----------------------------------------------------------------------------------

# Id counters standing in for PostgreSQL sequences, so that ids are unique across partitions.
id_sequences = sa.Table(
    "id_sequences",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("next_id", sa.Integer, nullable=False),
    info={"backends": ("sqlite",)},
)


@dataclass(frozen=True)
class ChildForeignKey:
    """A child's foreign key; ``target`` None means the same week's ``reports`` child."""

    suffix: str
    column: str
    target: str | None = None
    target_column: str = "id"
    ondelete: str | None = "CASCADE"


@dataclass(frozen=True)
class ChildSpec:
    """What a weekly child of a partitioned table carries besides its parent's columns.

    Index and constraint names are ``<child>_<suffix>``, the seeds' names. ``shared_id``
    names the column whose values come from the parent's id counter (PostgreSQL: its sequence,
    the column's default; SQLite: the ``id_sequences`` row named after the parent), never
    from a counter of the child's own.
    """

    primary_key: tuple[str, ...]
    indexes: tuple[tuple[str, tuple[str, ...], bool], ...]  # (suffix, columns, unique)
    foreign_keys: tuple[ChildForeignKey, ...] = ()
    shared_id: str | None = None


CHILD_SPECS: dict[str, ChildSpec] = {
    "reports": ChildSpec(
        primary_key=("id",),
        shared_id="id",
        indexes=(
            ("unique_uuid", ("uuid",), True),
            ("build_key", ("build",), False),
            ("date_processed_key", ("date_processed",), False),
            ("hangid_idx", ("hangid",), False),
            ("product_version_key", ("product", "version"), False),
            ("reason", ("reason",), False),
            ("signature_date_processed_build_key", ("signature", "date_processed", "build"), False),
            ("url_key", ("url",), False),
        ),
    ),
    "extensions": ChildSpec(
        primary_key=("report_id", "extension_key"),
        indexes=(
            ("extension_id_extension_version_idx", ("extension_id", "extension_version"), False),
            ("report_id_date_key", ("report_id", "date_processed", "extension_key"), False),
        ),
        foreign_keys=(ChildForeignKey("report_id_fkey", "report_id"),),
    ),
    "plugins_reports": ChildSpec(
        primary_key=("report_id", "plugin_id"),
        indexes=(("plugin_id_idx", ("plugin_id",), False),),
        foreign_keys=(
            ChildForeignKey("report_id_fkey", "report_id"),
            ChildForeignKey("plugin_id_fkey", "plugin_id", target="plugins", ondelete=None),
        ),
    ),
    "raw_crashes": ChildSpec(
        primary_key=("uuid",),
        indexes=(("date_processed_key", ("date_processed",), False),),
    ),
}

# Partitioned parents in creation order: reports first, since the others reference it.
PARTITIONED_TABLES: tuple[str, ...] = ("reports", "extensions", "plugins_reports", "raw_crashes")


def tablesFor(backend_name: str) -> list[sa.Table]:
    """The model's tables that exist on the backend named ``backend_name``."""
    return [
        t
        for t in metadata.sorted_tables
        if backend_name in t.info.get("backends", (backend_name,))
    ]
