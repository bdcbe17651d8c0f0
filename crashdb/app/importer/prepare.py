"""Turning legacy rows into reportdicts: versions mapped, values validated as
``db.reports`` validates them, and the winner of each duplicated uuid chosen."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from crashdb.app.importer.source import LegacyReport
from crashdb.exceptions import InvalidInputError
from crashdb.reports import validateReport

CANONICAL = "canonical"
ALIAS = "alias"
NEW = "new"


class VersionMapper:
    """The version lookup of ``db.versions`` held in memory for the length of an import:
    canonical exact match first, then alias, surrounding white space ignored."""

    def __init__(self, versions: Iterable[dict], aliases: Iterable[dict]) -> None:
        self.canonical = {(v["product"], v["version"]) for v in versions}
        self.aliases = {(a["product"], a["alias"]): a["version"] for a in aliases}

    def map(self, product: Any, raw: Any) -> tuple[Any, str | None]:
        """``(version, how)``: how is canonical, alias, new (no form known), or None when
        there is nothing to map (no product or no version)."""
        if not isinstance(product, str) or not isinstance(raw, str):
            return raw, None
        wanted = raw.strip()
        if (product, wanted) in self.canonical:
            return wanted, CANONICAL
        aliased = self.aliases.get((product, wanted))
        if aliased is not None:
            return aliased, ALIAS
        return wanted, NEW


@dataclass(slots=True)
class Prepared:
    """A legacy row ready for ``addReports``, or the reason it cannot be imported."""

    legacy: LegacyReport
    report: dict[str, Any] | None = None
    how: str | None = None
    reason: str | None = None


def prepare(legacy: LegacyReport, mapper: VersionMapper, validate: bool = True) -> Prepared:
    """The reportdict for a legacy row (version mapped, validated), or a rejection reason.

    The row's ``values`` become the reportdict (version mapped, extensions attached) rather
    than being copied: a legacy row is prepared once. ``mapper`` is only read, so deciding
    which duplicate wins and importing it agree. Without ``validate`` a row is checked only as
    far as the import itself relies on it (a string uuid, an aware ``date_processed``, a new
    version short enough to become canonical) and left to ``addReports`` to validate as it
    writes: checking every value twice was a third of the import's time.
    """
    report = legacy.values
    uuid = report.get("uuid")
    if uuid is None or (isinstance(uuid, str) and not uuid.strip()):
        return Prepared(legacy, reason="no uuid")
    processed = report.get("date_processed")
    if processed is None:
        return Prepared(legacy, reason="no date_processed")
    report["version"], how = mapper.map(report.get("product"), report.get("version"))
    if legacy.extensions:
        report["extensions"] = legacy.extensions
    if (validate or how == NEW or type(uuid) is not str
            or not isinstance(processed, datetime.datetime) or processed.tzinfo is None):
        try:
            validateReport(report)
        except InvalidInputError as error:
            return Prepared(legacy, reason=str(error))
    return Prepared(legacy, report=report, how=how)


def _processedOrder(prepared: Prepared) -> tuple:
    return (prepared.legacy.values.get("date_processed"), prepared.legacy.legacy_id)


def chooseWinners(groups: dict[str, list[LegacyReport]], mapper: VersionMapper) -> dict[str, Any]:
    """For each duplicated uuid, the legacy key of the row to import: the most recently
    processed row that can be imported, the highest key on a tie; None if none can."""
    winners: dict[str, Any] = {}
    for uuid, rows in groups.items():
        usable = [p for p in (prepare(row, mapper) for row in rows) if p.report is not None]
        winners[uuid] = max(usable, key=_processedOrder).legacy.legacy_id if usable else None
    return winners
