"""Personal data in crash reports (SPEC 16): which fields hold it, and views without it.

Users type their e-mail address and comments into the crash reporter, and the URL they were
visiting travels with the crash. Only a request bearing a valid API token sees them; every
other page and JSON answer is built from the public views below, and a search that names one
of these fields (as a filter, a facet or a column) is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from crashdb.exceptions import CrashDBError

PERSONAL_COLUMNS = frozenset({"email", "url", "user_id", "user_comments"})
# raw crash keys, compared in lower case: "Email", "EMAIL" and "email" are the same key here
PERSONAL_RAW_KEYS = frozenset({"email", "url", "comments", "userid"})
RAW_PREFIX = "raw."


class PersonalDataError(CrashDBError):
    """A request without a valid token asked for personal data (HTTP 403)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"field {field!r} holds personal data: it needs an API token")
        self.field = field


def isPersonalRawKey(key: Any) -> bool:
    return isinstance(key, str) and key.lower() in PERSONAL_RAW_KEYS


def isPersonalField(field: Any) -> bool:
    """Whether a search field (a report column or ``raw.KEY``) holds personal data."""
    if not isinstance(field, str):
        return False
    if field.lower().startswith(RAW_PREFIX):
        return isPersonalRawKey(field[len(RAW_PREFIX):])
    return field.lower() in PERSONAL_COLUMNS


def publicReport(report: Mapping[str, Any]) -> dict[str, Any]:
    """``report`` without its personal columns."""
    return {key: value for key, value in report.items() if key not in PERSONAL_COLUMNS}


def publicRawCrash(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` without its personal keys, in any letter case."""
    return {key: value for key, value in raw.items() if not isPersonalRawKey(key)}


def refusePersonalFields(fields: Iterable[Any]) -> None:
    """PersonalDataError naming the first personal field among ``fields``."""
    for field in fields:
        if isPersonalField(field):
            raise PersonalDataError(field)
