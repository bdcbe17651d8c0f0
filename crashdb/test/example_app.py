"""A tiny crash processor: the application of the worked example in docs/testing.md.

A collector has stored each crash's submitted metadata as a raw JSON crash
(``db.rawcrashes.addRawCrash``); :func:`processCrash` turns one into a processed report
(``db.reports.addReport``). Its tests, in ``test_example_app.py``, run it on the fake database.
"""

from __future__ import annotations

import datetime
from typing import Any

from twisted.internet import defer

from crashdb import model

UTC = datetime.UTC
EMPTY_SIGNATURE = "EMPTY: no crashing thread identified"


class CrashNotFound(Exception):
    """No raw crash with this uuid was stored (in the week given)."""


class BadRawCrash(ValueError):
    """A raw crash that cannot be processed: it lacks its submission time."""


def _fit(column: str, value: Any, notes: list[str]) -> str | None:
    """``value`` as text that ``reports.<column>`` accepts: clients send anything, and crashdb
    rejects (rather than cuts) a string longer than its column or holding a NUL character."""
    if value is None:
        return None
    text = str(value).replace("\x00", "")
    length = model.reports.c[column].type.length
    if length is not None and len(text) > length:
        notes.append(f"{column} truncated to {length} characters")
        text = text[:length]
    return text


def parseAddons(text: str) -> list[dict[str, str | None]]:
    """The raw crash's ``Add-ons`` field (``id:version,id:version``) as crashdb extensions."""
    extensions: list[dict[str, str | None]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        extension_id, _, version = item.partition(":")
        extensions.append({"extension_id": extension_id, "extension_version": version or None})
    return extensions


def submittedAt(raw_crash: dict[str, Any]) -> datetime.datetime:
    """The collector's ``submitted_timestamp`` (ISO 8601; UTC when it names no zone)."""
    try:
        when = datetime.datetime.fromisoformat(raw_crash["submitted_timestamp"])
    except (KeyError, TypeError, ValueError) as error:
        raise BadRawCrash(f"no usable submitted_timestamp: {error}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def reportFromRawCrash(uuid: str, raw_crash: dict[str, Any]) -> dict[str, Any]:
    """The reportdict (with its extensions) for one raw crash."""
    notes: list[str] = []
    report: dict[str, Any] = {
        "uuid": uuid,
        "date_processed": submittedAt(raw_crash),
        "product": _fit("product", raw_crash.get("ProductName"), notes),
        "version": _fit("version", raw_crash.get("Version"), notes),
        "build": _fit("build", raw_crash.get("BuildID"), notes),
        "url": _fit("url", raw_crash.get("URL"), notes),
        "user_comments": _fit("user_comments", raw_crash.get("Comments"), notes),
        "signature": _fit("signature", raw_crash.get("TopFrame") or EMPTY_SIGNATURE, notes),
        "hangid": _fit("hangid", raw_crash.get("HangID"), notes),
        "extensions": parseAddons(str(raw_crash.get("Add-ons", ""))),
    }
    try:
        report["uptime"] = int(raw_crash["CrashTime"]) - int(raw_crash["StartupTime"])
    except (KeyError, TypeError, ValueError):
        notes.append("no uptime: CrashTime or StartupTime missing or not a number")
    report["processor_notes"] = "; ".join(notes) or None
    report["success"] = True
    return report


@defer.inlineCallbacks
def processCrash(db, uuid: str, stored_at: datetime.datetime | None = None):
    """Make the report of raw crash ``uuid``; Deferred of the report's id.

    ``stored_at``, any time in the week the raw crash was stored, lets crashdb read that one
    week; without it every week is searched. The report's ``date_processed`` is the crash's
    submission time, so it lands in the same week however often the crash is processed, and
    crashdb's per-week idempotence makes a second run store nothing new: a job queue may well
    deliver a crash twice. Fails with CrashNotFound or BadRawCrash.
    """
    raw_crash = yield db.rawcrashes.getRawCrash(uuid, stored_at)
    if raw_crash is None:
        raise CrashNotFound(uuid)
    report_id = yield db.reports.addReport(reportFromRawCrash(uuid, raw_crash))
    return report_id
