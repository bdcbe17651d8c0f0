"""``crashdb signature``: one crash signature's lifecycle, summary and correlations."""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Sequence
from typing import Any

from crashdb.app.cli import UsageError, addDbArgument, daysBefore, runDeferred
from crashdb.connector import DBConnector
from crashdb.signatures import FACETS

NAME = "signature"
HELP = ("show a crash signature's lifecycle (first and last report, builds, versions), the "
        "summary of its recent crashes and what they have in common")

BAR_WIDTH = 20
TERMS_SHOWN = 5  # per facet
TERM_WIDTH = 40
DAY = datetime.timedelta(days=1)


def addArguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("signature", metavar="SIGNATURE", help="the crash signature, quoted")
    parser.add_argument("--product", metavar="P",
                        help="only this product (default: all; correlations use the "
                             "signature's most frequent product)")
    parser.add_argument("--version", metavar="V", help="only this version (default: all)")
    parser.add_argument("--days", type=int, default=7, metavar="N",
                        help="the last N days up to today, UTC (default 7)")
    addDbArgument(parser)


def _when(value: datetime.datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}"


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def formatLifecycle(found: dict[str, Any]) -> str:
    """``getSignature``'s answer: first and last report overall, then per product and version."""
    lines = [
        f"Signature: {found['signature']}",
        f"  first report {_when(found['first_report'])} UTC, first build "
        f"{found['first_build'] or '-'}, last report {_when(found['last_report'])} UTC",
        f"  {'product':<14} {'version':<12} {'first report':<19}  {'first build':<16} "
        f"last report",
    ]
    for v in found["versions"]:
        lines.append(f"  {v['product']:<14} {v['version'] or '-':<12} "
                     f"{_when(v['first_report'])}  {v['first_build'] or '-':<16} "
                     f"{_when(v['last_report'])}")
    return "\n".join(lines)


def bar(percent: float, width: int = BAR_WIDTH) -> str:
    """``percent`` (0 to 100) as a bar of ``width`` characters: ``#`` filled, ``.`` not."""
    filled = round(percent * width / 100)
    return "#" * filled + "." * (width - filled)


def formatSummary(summary: dict[str, Any], title: str, terms: int = TERMS_SHOWN) -> str:
    """``getSummary``'s answer: totals, then each facet's top ``terms`` as bars."""
    lines = [title, f"  {summary['count']} crashes on {summary['installations']} installations"]
    for facet in FACETS:
        entries = summary["facets"][facet]
        if not entries:
            continue
        lines.append(f"  {facet}")
        for entry in entries[:terms]:
            term = "(none)" if entry["term"] is None else _shorten(entry["term"], TERM_WIDTH)
            lines.append(f"    {bar(entry['percent'])} {entry['percent']:5.1f}% "
                         f"{entry['count']:>6}  {term}")
        if len(entries) > terms:
            lines.append(f"    ... {len(entries) - terms} more")
    return "\n".join(lines)


def formatCorrelations(rows: Sequence[dict[str, Any]], title: str) -> str:
    """``getCorrelations``'s answer: the signature's share and everyone's, per value."""
    lines = [title, f"  {'in sig':>6} {'overall':>7} {'diff':>6} {'count':>6}  field = value"]
    for row in rows:
        lines.append(f"  {row['in_signature']:>6.1%} {row['overall']:>7.1%} "
                     f"{row['difference']:>+6.1%} {row['count']:>6}  {row['field']} = "
                     f"{_shorten(row['value'], TERM_WIDTH + 20)}")
    if not rows:
        lines.append("  (nothing stands out, or too few crashes)")
    return "\n".join(lines)


def formatNewSignatures(rows: Sequence[dict[str, Any]], title: str) -> str:
    """``getNewSignatures``'s answer, most frequent first."""
    lines = [title, f"  {'count':>6}  {'first report':<19}  {'first build':<16} signature"]
    for row in rows:
        lines.append(f"  {row['count']:>6}  {_when(row['first_report'])}  "
                     f"{row['first_build'] or '-':<16} {_shorten(row['signature'], 60)}")
    if not rows:
        lines.append("  (none: has `crashdb rollup` run for these days?)")
    return "\n".join(lines)


def periodName(product: str | None, version: str | None, start: datetime.date,
               end: datetime.date) -> str:
    """``Firefox 17.0b3, 2012-10-24 to 2012-10-30 (UTC)``; the end is inclusive."""
    name = product or "all products" + ("," if version else "")
    if version:
        name += f" {version}" if product else f" version {version}"
    return f"{name}, {start:%Y-%m-%d} to {end - DAY:%Y-%m-%d} (UTC)"


async def show(reactor: Any, args: argparse.Namespace) -> str:
    end = datetime.datetime.now(datetime.UTC).date() + DAY
    start = daysBefore(end, args.days)
    db = DBConnector(args.db, reactor=reactor)
    try:
        await db.setup()
        found = await db.signatures.getSignature(args.signature)
        summary = await db.signatures.getSummary(args.signature, args.product, args.version,
                                                 start, end)
        if found is None and not summary["count"]:
            raise UsageError(f"no crash with signature {args.signature!r} has been rolled up "
                             "or reported in the period")
        product = args.product
        if product is None and summary["facets"]["product"]:
            product = summary["facets"]["product"][0]["term"]
        correlations = None
        if product is not None:
            correlations = await db.signatures.getCorrelations(
                args.signature, product, args.version, start, end)
    finally:
        await db.stop()
    parts = [formatLifecycle(found) if found else
             f"Signature: {args.signature}\n  (no lifecycle yet: run `crashdb rollup`)"]
    period = periodName(args.product, args.version, start, end)
    parts.append(formatSummary(summary, f"Summary: {period}"))
    if correlations is not None:
        parts.append(formatCorrelations(
            correlations,
            f"Correlations with all crashes of {periodName(product, args.version, start, end)}"))
    return "\n\n".join(parts)


def run(args: argparse.Namespace) -> int:
    print(runDeferred(show, args))
    return 0
