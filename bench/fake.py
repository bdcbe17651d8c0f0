"""The behaviour suites' wall time on the fake, against file SQLite and PostgreSQL.

Run as ``python bench/fake.py [--db POSTGRES_URL]``. Each backend runs the same tests (the
suites are parametrized over backends; ``-k`` picks one), in a pytest process of its own; the
figures are pytest's own timings, so interpreter start-up and collection are not counted.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from bench._common import postgresUrl  # noqa: E402


def behaviourSuites() -> list[str]:
    """Test files that use the backend-parametrized ``db`` fixture."""
    files = []
    for path in sorted(glob.glob(os.path.join(ROOT, "crashdb", "test", "test_*.py"))):
        with open(path, encoding="utf-8") as source:
            if re.search(r"def test_\w+\(db\b", source.read()):
                files.append(path)
    return files


def run(backend: str, files: list[str], env: dict[str, str]) -> tuple[int, float]:
    """(tests passed, seconds) for one backend."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-k", backend, *files],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    match = re.search(r"(\d+) passed.* in ([\d.]+)s", summary)
    if result.returncode != 0 or match is None:
        raise SystemExit(f"{backend}: the suite did not pass:\n{result.stdout[-3000:]}")
    return int(match.group(1)), float(match.group(2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="PostgreSQL server URL (default: a throwaway server)")
    args = parser.parse_args()
    files = behaviourSuites()
    with postgresUrl(args.db) as url:
        env = {**os.environ, "CRASHDB_TEST_DB_URL": url, "CRASHDB_REQUIRE_PG": "1"}
        timings = {backend: run(backend, files, env) for backend in
                   ("fake", "sqlite", "postgresql")}
    base = timings["fake"][1]
    print(f"behaviour suites: {len(files)} files")
    print(f"{'backend':<11} {'tests':>6} {'seconds':>9} {'per test':>10} {'vs fake':>8}")
    for backend, (count, seconds) in timings.items():
        print(f"{backend:<11} {count:>6} {seconds:>9.2f} {seconds / count * 1000:>8.1f}ms "
              f"{seconds / base:>7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
