"""A throwaway Citus cluster for tests and benchmarks: a coordinator and workers on loopback.

Each node is an ordinary :class:`~crashdb.test.util.pgserver.PostgresServer` started with
``shared_preload_libraries = citus``. The cluster's database is created on every node with the
extension, the coordinator registers itself and adds each worker. Citus keeps its node list per
database, so a cluster serves one database; tests share it and :meth:`CitusCluster.reset` empties
it between them (``crashdb.test.util.db.citus``).

Needs the Citus extension installed into the server (``../shared/citus/build.sh``).

Command line, for CI scripts and benchmarks (``start`` prints only the coordinator's URL)::

    python -m crashdb.test.util.citus start --dir DIR [--workers 2]
    python -m crashdb.test.util.citus stop --dir DIR
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

import psycopg2

from crashdb.test.util.pgserver import PostgresServer, findPostgresBinDir

DATABASE = "crashdb"
#: Few shards per table: a test cluster's DDL (a week is four tables' shards) stays quick.
SHARD_COUNT = 4


def citusInstalled() -> bool:
    """True if the server's extension directory has Citus (``build.sh`` has run)."""
    bindir = findPostgresBinDir()
    if bindir is None:
        return False
    version = os.path.basename(os.path.dirname(bindir))
    return os.path.exists(f"/usr/share/postgresql/{version}/extension/citus.control")


class CitusCluster:
    """A coordinator and ``workers`` workers, each a PostgreSQL cluster of its own under
    ``directory`` (default: a fresh temporary directory), serving one database."""

    def __init__(self, directory: str | None = None, workers: int = 2) -> None:
        self.directory = os.path.abspath(directory or tempfile.mkdtemp(prefix="crashdb-citus-"))
        os.makedirs(self.directory, exist_ok=True)
        os.chmod(self.directory, 0o755)  # the nodes' own directories are the server user's
        self.nodes = [PostgresServer(os.path.join(self.directory, name))
                      for name in ["coordinator"] + [f"worker{i}" for i in range(1, workers + 1)]]
        for node in self.nodes:
            node.settings["shared_preload_libraries"] = "citus"
            node.settings["max_connections"] = "300"
            node.settings["max_prepared_transactions"] = "200"  # Citus's two-phase commits

    @property
    def coordinator(self) -> PostgresServer:
        return self.nodes[0]

    @property
    def url(self) -> str:
        """The coordinator's URL of the cluster's database."""
        return self.coordinator.databaseUrl(DATABASE)

    def start(self) -> None:
        """Start every node; on first start create the database and register the workers."""
        fresh = not os.path.exists(os.path.join(self.coordinator.pgdata, "PG_VERSION"))
        for node in self.nodes:
            node.start()
        if fresh:
            self.createDatabase(DATABASE)

    def createDatabase(self, name: str, citus: bool = True) -> str:
        """Create database ``name`` on every node and, if ``citus``, make it the cluster's (see
        ``addCitus``); the coordinator's URL of it."""
        for node in self.nodes:
            _execute(node.url, f'CREATE DATABASE "{name}"')
        if citus:
            self.addCitus(name)
        return self.coordinator.databaseUrl(name)

    def addCitus(self, name: str) -> None:
        """What an operator does to make database ``name`` a Citus cluster's: the extension on
        every node, then the coordinator registers itself and adds the workers."""
        url = self.coordinator.databaseUrl(name)
        for node in self.nodes:
            _execute(node.databaseUrl(name), "CREATE EXTENSION citus")
        _execute(url, f'ALTER DATABASE "{name}" SET citus.shard_count = {SHARD_COUNT}')
        _execute(url, f"SELECT citus_set_coordinator_host('127.0.0.1', {self.coordinator.port})")
        for worker in self.nodes[1:]:
            _execute(url, f"SELECT citus_add_node('127.0.0.1', {worker.port})")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def cleanup(self) -> None:
        """Stop every node and delete the directory; safe to call more than once."""
        try:
            for node in reversed(self.nodes):
                node.cleanup()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def _execute(url: str, statement: str) -> None:
    conn = psycopg2.connect(url, connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(statement)
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crashdb.test.util.citus")
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--dir", required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    cluster = CitusCluster(args.dir, args.workers)
    if args.action == "start":
        cluster.start()
        print(cluster.url)
    else:
        cluster.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
