"""The demo processor's transform: a raw crash to the reportdict (with extensions and plugins)
that ``db.reports.addReport`` stores."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

UTC = datetime.UTC


# -- the processor's side: raw crash to report ---------------------------------------------------


def _seconds(raw: dict[str, Any], key: str) -> int | None:
    try:
        return int(raw[key])
    except (KeyError, TypeError, ValueError):
        return None


def _difference(later: int | None, earlier: int | None) -> int | None:
    return None if later is None or earlier is None else later - earlier


def _clip(value: Any, length: int) -> Any:
    return value[:length] if isinstance(value, str) else value


def _utcNow() -> datetime.datetime:
    return datetime.datetime.now(UTC)


def reportFromRawCrash(
    uuid: str, raw: dict[str, Any], processor: str, now: Callable[[], datetime.datetime] = _utcNow
) -> dict[str, Any]:
    """The reportdict (with ``extensions`` and ``plugins``) a processor makes of a raw crash."""
    started = now()
    dump = raw.get("dump") or {}
    crash_time = _seconds(raw, "CrashTime")
    startup = _seconds(raw, "StartupTime")
    install = _seconds(raw, "InstallTime")
    report: dict[str, Any] = {
        "uuid": uuid,
        "date_processed": datetime.datetime.fromisoformat(raw["submitted_timestamp"]),
        "client_crash_date": (
            None if crash_time is None else datetime.datetime.fromtimestamp(crash_time, UTC)
        ),
        "product": _clip(raw.get("ProductName"), 30),
        "version": _clip(raw.get("Version"), 16),
        "build": _clip(raw.get("BuildID"), 30),
        "release_channel": raw.get("ReleaseChannel"),
        "productid": raw.get("ProductID"),
        "signature": _clip(dump.get("signature"), 255),
        "url": _clip(raw.get("URL"), 255),
        "install_age": _difference(crash_time, install),
        "uptime": _difference(crash_time, startup),
        "last_crash": _seconds(raw, "SecondsSinceLastCrash"),
        "cpu_name": _clip(dump.get("cpu_name"), 100),
        "cpu_info": _clip(dump.get("cpu_info"), 100),
        "reason": _clip(dump.get("reason"), 255),
        "address": _clip(dump.get("address"), 20),
        "os_name": _clip(dump.get("os_name"), 100),
        "os_version": _clip(dump.get("os_version"), 100),
        "topmost_filenames": dump.get("topmost_filenames"),
        "email": _clip(raw.get("Email"), 100),
        "user_comments": _clip(raw.get("Comments"), 1024),
        "hangid": raw.get("HangID"),
        "process_type": raw.get("ProcessType"),
        "addons_checked": "Add-ons" in raw,
        "started_datetime": started,
        "success": True,
        "truncated": False,
        "processor_notes": f"crashdb demo processor {processor}",
    }
    extensions = []
    for entry in filter(None, (raw.get("Add-ons") or "").split(",")):
        extension_id, _, extension_version = entry.rpartition(":")
        extensions.append({"extension_id": extension_id or entry,
                           "extension_version": extension_version or None})
    report["extensions"] = extensions
    if raw.get("PluginFilename") and raw.get("PluginName"):
        report["plugins"] = [{"filename": raw["PluginFilename"], "name": raw["PluginName"],
                              "version": raw.get("PluginVersion") or ""}]
        if "Flash" in raw["PluginName"]:
            report["flash_version"] = raw.get("PluginVersion")
    report["completed_datetime"] = now()
    return report
