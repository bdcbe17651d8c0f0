"""A database for the web front end's tests and screenshots: the demo's made-up crashes,
processed as the demo's processors would, rolled up, plus a few hostile crashes.

The hostile crashes carry what an attacker controls in a crash report: a signature that is a
script, a URL that closes an attribute, comments that close a ``<textarea>``, and personal
fields under raw keys in unusual letter case. Every page must show them as text.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import random
from typing import Any

from twisted.internet import defer

from crashdb.app.demo import CrashGenerator, reportFromRawCrash
from crashdb.app.demo.generator import dailyUsers, withExplosion

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)

SCRIPT_SIGNATURE = "<script>alert(1)</script>"
TEMPLATE_SIGNATURE = "std::vector<int>::operator[]"
HOSTILE_URL = '"><script>alert(2)</script>'
HOSTILE_COMMENTS = "</textarea><script>alert(3)</script><img src=x onerror=alert(4)>"
HOSTILE_EMAIL = "victim@example.com"
HOSTILE_USER_ID = "user-<b>42</b>"
HOSTILE_UUID = "00000000-0000-4000-8000-00000hostile"


@dataclasses.dataclass
class SiteData:
    """What :func:`fillSite` stored, for tests to compare pages with."""

    now: datetime.datetime
    days: list[datetime.date]
    uuids: list[str]
    hostile_uuid: str = HOSTILE_UUID


def _hostileCrash(when: datetime.datetime) -> tuple[str, dict[str, Any], dict[str, Any]]:
    raw = {
        "ProductName": "Firefox", "Version": "16.0.1", "BuildID": "20121010144125",
        "submitted_timestamp": when.isoformat(), "URL": HOSTILE_URL,
        "Comments": HOSTILE_COMMENTS, "EMAIL": HOSTILE_EMAIL, "userid": HOSTILE_USER_ID,
        "Theme": "<marquee>theme</marquee>",
        "dump": {"signature": SCRIPT_SIGNATURE, "os_name": "Windows NT",
                 "reason": "EXCEPTION_<ACCESS>_VIOLATION"},
        "Add-ons": '"><svg onload=alert(5)>:1.0',
    }
    report = reportFromRawCrash(HOSTILE_UUID, raw, "site-data", now=lambda: when)
    report.update(email=HOSTILE_EMAIL, user_id=HOSTILE_USER_ID)  # keys the processor does not read
    return HOSTILE_UUID, raw, report


async def fillSite(db: Any, crashes: int = 600, seed: int = 18,
                   now: datetime.datetime | None = None) -> SiteData:
    """Store ``crashes`` demo crashes (raw and processed) over the demo's three weeks ending at
    ``now`` (one signature exploding yesterday, as in the demo), the hostile ones, a few
    ``std::vector<int>::operator[]`` crashes; roll up every day and feed the demo's active
    daily users. ``db`` must be set up."""
    now = now or datetime.datetime.now(UTC)
    rng = random.Random(seed)
    generator = CrashGenerator(rng, now)
    made = withExplosion(generator, crashes, now.date() - DAY)
    reports = []
    for uuid, received, raw in made:
        await db.rawcrashes.addRawCrash(uuid, received, raw)
        reports.append(reportFromRawCrash(uuid, raw, "site-data", now=lambda r=received: r))
    # a signature full of markup characters, on several days, and always on three of Firefox's
    # last five (among this week's top crashers, whatever the time of day)
    recent = [r for r in reports
              if r["product"] == "Firefox" and r["date_processed"] >= now - 5 * DAY]
    for report in reports[::40] + recent[:3]:
        report["signature"] = TEMPLATE_SIGNATURE
    # two hours ago, but today (UTC) even just after midnight: the browser test looks for it
    # among today's top crashers
    midnight = datetime.datetime.combine(now.date(), datetime.time(), UTC)
    uuid, raw, hostile = _hostileCrash(max(now - datetime.timedelta(hours=2), midnight))
    await db.rawcrashes.addRawCrash(uuid, hostile["date_processed"], raw)
    reports.append(hostile)
    await db.reports.addReports(reports)
    days = []
    day = generator.start.date()
    while day <= now.date():
        await db.rollups.runDay(day)
        days.append(day)
        day += DAY
    await db.crashrates.addAdu(dailyUsers(crashes, days))
    return SiteData(now=now, days=days, uuids=[u for u, _, _ in made] + [uuid])


def main(argv: list[str] | None = None) -> None:
    """``python -m crashdb.test.util.sitedata URL [CRASHES]``: upgrade and fill the database;
    print the crash ids stored, one line of JSON."""
    import sys

    from twisted.internet import task

    from crashdb.connector import DBConnector

    args = sys.argv[1:] if argv is None else argv
    url, crashes = args[0], int(args[1]) if len(args) > 1 else 600

    async def fill(reactor: Any) -> None:
        db = DBConnector(url, reactor=reactor)
        try:
            await db.setup(check_version=False)
            await db.model.upgrade()
            print(json.dumps(dataclasses.asdict(await fillSite(db, crashes))["uuids"]))
        finally:
            await db.stop()

    task.react(lambda reactor: defer.ensureDeferred(fill(reactor)))


if __name__ == "__main__":
    main()
