"""The import's reconciliation: every legacy row read lands in exactly one of written,
consolidated or rejected."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crashdb.exceptions import CrashDBError


class LegacyImportError(CrashDBError):
    """The legacy database cannot be imported as a whole (no reports table, no key)."""


@dataclass
class ImportSummary:
    """The reconciliation of one run: counts of legacy report rows (``versions_added`` aside)."""

    read: int = 0
    written: int = 0
    consolidated: int = 0
    rejected: int = 0
    aliased: int = 0
    new_versions: list[tuple[str, str]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def versions_added(self) -> int:
        return len(self.new_versions)

    @property
    def balanced(self) -> bool:
        return self.read == self.written + self.consolidated + self.rejected

    def asDict(self) -> dict[str, Any]:
        """The summary JSON: the reconciliation keys, then the versions added."""
        return {
            "read": self.read,
            "written": self.written,
            "consolidated": self.consolidated,
            "rejected": self.rejected,
            "aliased": self.aliased,
            "versions_added": self.versions_added,
            "balanced": self.balanced,
            "new_versions": [{"product": p, "version": v} for p, v in self.new_versions],
            "ignored_columns": self.ignored_columns,
            "seconds": round(self.seconds, 3),
        }

    def lines(self) -> list[str]:
        """The reconciliation as printed at the end of an import."""
        width = len(str(max(self.read, 1)))
        sign = "=" if self.balanced else "!="
        out = [
            f"read          {self.read:>{width}}  legacy report rows",
            f"written       {self.written:>{width}}  stored (by this run or an earlier run)",
            f"consolidated  {self.consolidated:>{width}}  duplicates of a uuid merged "
            "into its latest row",
            f"rejected      {self.rejected:>{width}}  listed in the rejects file",
            f"balance       {self.read} {sign} {self.written} + {self.consolidated} + "
            f"{self.rejected}  {'OK' if self.balanced else 'DOES NOT BALANCE'}",
            f"aliased       {self.aliased:>{width}}  written with a version mapped by an alias",
            f"versions added {self.versions_added}"
            + (": " + ", ".join(f"{p} {v}" for p, v in self.new_versions) if self.new_versions
               else ""),
        ]
        if self.ignored_columns:
            out.append("ignored legacy columns: " + ", ".join(self.ignored_columns))
        return out
