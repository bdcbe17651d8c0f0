"""Importing a legacy crash database into crashdb (SPEC 11; docs/importing.md).

The legacy database (any SQLAlchemy backend) holds one unpartitioned ``reports`` table and an
``extensions`` table without ``date_processed``; both are reflected, not assumed. The import:

1. finds, in SQL, every uuid the legacy ``reports`` holds more than once and picks its winner:
   the most recently processed row that crashdb can take (ties: the highest legacy id);
2. streams ``reports`` in key order, in batches, merged with its extensions (two server-side
   cursors, so memory stays flat however large the table);
3. turns each row into a reportdict: timestamps to aware UTC, the version mapped through the
   ``versions`` component (canonical, else alias, else added as canonical), extensions
   renumbered in legacy key order (crashdb gives them the report's ``date_processed``);
4. rejects what crashdb cannot take (no uuid, no date, a value validation refuses), one row at
   a time, and counts the losing duplicates as consolidated;
5. writes the rest through ``db.reports.addReports``: atomic per batch and idempotent per (uuid,
   week), so an interrupted import is finished by running it again.

Every legacy row is read once and lands in exactly one of written, consolidated or rejected:
``read == written + consolidated + rejected`` is the reconciliation.
"""

from crashdb.app.importer.prepare import VersionMapper, prepare
from crashdb.app.importer.run import DEFAULT_BATCH_SIZE, LegacyImporter
from crashdb.app.importer.source import LegacyReport, LegacySource
from crashdb.app.importer.summary import ImportSummary, LegacyImportError

__all__ = ["DEFAULT_BATCH_SIZE", "ImportSummary", "LegacyImportError", "LegacyImporter",
           "LegacyReport", "LegacySource", "VersionMapper", "prepare"]
