"""Legacy import memory: the peak RSS of ``crashdb import-legacy`` for legacy tables of growing
size, which streaming keeps flat.

Run as ``python bench/import_memory.py [--rows 20000 100000 1000000] [--batch-size N]``. For
each size a SQLite legacy database (``generateReports``: 0-3 extensions a report, one row in a
hundred a duplicated uuid) and an upgraded SQLite target are made in a temporary directory, and
the command runs in a subprocess whose peak resident set size (``ru_maxrss`` from ``wait4``) is
printed with its rows/s and CPU seconds (SQLite works in the importing process, so these are all
of the import's work, and load moves them much less than the seconds). Memory that grows with
the table would show as a peak rising with the row count; what the import holds by design is a
batch (read, prepared and written at once) and the winner of each duplicated uuid (a small dict
entry per duplicated uuid).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crashdb.app.importer import DEFAULT_BATCH_SIZE  # noqa: E402
from crashdb.test.util.db import upgradeUrl  # noqa: E402
from crashdb.test.util.legacy import generateReports, writeLegacy  # noqa: E402


def importPeak(directory: str, rows: int, batch_size: int) -> tuple[float, float, float]:
    """(peak RSS in MB, seconds, CPU seconds) of one ``crashdb import-legacy`` of ``rows``
    legacy rows."""
    source = f"sqlite:///{os.path.join(directory, f'legacy-{rows}.sqlite')}"
    target = f"sqlite:///{os.path.join(directory, f'target-{rows}.sqlite')}"
    writeLegacy(source, generateReports(rows))
    upgradeUrl(target)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "crashdb", "import-legacy", "--from", source, "--db", target,
         "--batch-size", str(batch_size)],
        cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"import of {rows} rows failed with status {process.returncode}")
    # ru_maxrss is in KiB on Linux
    return usage.ru_maxrss / 1024, seconds, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 100_000],
                        help="legacy table sizes (20000 100000)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"import batch size ({DEFAULT_BATCH_SIZE})")
    args = parser.parse_args()
    print(f"{'legacy rows':>12} {'peak RSS':>10} {'seconds':>9} {'rows/s':>8} {'CPU s':>8}")
    with tempfile.TemporaryDirectory(prefix="crashdb-import-memory-") as directory:
        for rows in args.rows:
            peak, seconds, cpu = importPeak(directory, rows, args.batch_size)
            print(f"{rows:>12} {peak:>7.1f} MB {seconds:>9.1f} {rows / seconds:>8.0f} {cpu:>8.1f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
