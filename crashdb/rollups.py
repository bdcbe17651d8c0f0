"""Daily rollups: every per-day summary crashdb keeps, run together for cron (SPEC 12).

Each rollup is a component method ``update...(day)`` that recomputes (or merges) one UTC day and
returns the rows it wrote; :data:`ROLLUPS` lists them in the order they run. A later rollup is
one more line there.
"""

from __future__ import annotations

import datetime

from twisted.internet import defer

from crashdb.base import DBConnectorComponent
from crashdb.validation import requireDay

# (rollup name, component attribute of the connector, its method rolling up one day)
ROLLUPS: tuple[tuple[str, str, str], ...] = (
    ("tcbs", "tcbs", "updateTcbs"),
    ("signatures", "signatures", "updateSignatures"),
    ("summaries", "signatures", "updateSummaries"),
)


class RollupsConnectorComponent(DBConnectorComponent):
    """``db.rollups``: run every daily rollup of a day."""

    names = tuple(name for name, _, _ in ROLLUPS)

    @defer.inlineCallbacks
    def runDay(self, day: datetime.date):
        """Run every rollup of :data:`ROLLUPS` for one UTC day, in turn; Deferred of
        ``{rollup name: rows written}``. Each rollup is idempotent and commits on its own, so
        re-running the day (say, after a failure half way) completes it."""
        requireDay(day, "day")  # raised here, it fails the Deferred: nothing was written
        written = {}
        for name, component, method in ROLLUPS:
            written[name] = yield getattr(getattr(self.db, component), method)(day)
        return written
