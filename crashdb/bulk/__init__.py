"""The bulk-write machinery: PostgreSQL's COPY text (:mod:`~crashdb.bulk.copytext`), the
checking encoder that validates and formats in one pass (:mod:`~crashdb.bulk.encoder`), and
rows written week by week into partitioned tables."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from crashdb import model
from crashdb.backends.base import Backend
from crashdb.base import Rows
from crashdb.bulk import copytext
from crashdb.partitions import childTable


def bulkInsertWeeks(
    conn: sa.Connection, backend: Backend, parent: str, columns: Sequence[str],
    weeks: Mapping[datetime.datetime, Rows],
) -> None:
    """``backend.bulkInsert`` of each week's rows into ``parent``: through the parent in one
    statement where the database routes rows to partitions (a COPY per batch rather than per
    week), else into each week's child. A missing week fails the call
    (``backend.isMissingPartition``)."""
    if backend.routesPartitions:
        rows = copytext.chain(weeks.values())
        if len(rows):
            backend.bulkInsert(conn, model.metadata.tables[parent], columns, rows)
        return
    for monday, part in weeks.items():
        if len(part):
            backend.bulkInsert(conn, childTable(parent, monday, backend), columns, part)
