"""A throwaway PostgreSQL server for tests, benchmarks and CI.

``PostgresServer`` runs ``initdb`` into a temporary directory and starts a cluster of its own on
a free loopback port with durability switched off (fsync, full-page writes), so that tests get a
real PostgreSQL without Docker, a system service or a network. It can also crash the server
(``pg_ctl stop -m immediate``) and bring it back on the same port and data, to exercise recovery.

``initdb`` and ``postgres`` refuse to run as root, so when we are root every server command runs
as the ``postgres`` system user through ``runuser``, and the directory is chowned to that user.

Command line, for CI scripts and benchmarks (``start`` prints only the URL and leaves the server
running; ``stop`` stops it and deletes DIR)::

    python -m crashdb.test.util.pgserver start --dir DIR [--port PORT]
    python -m crashdb.test.util.pgserver stop --dir DIR
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from types import TracebackType

#: Where Debian/Ubuntu install the server binaries, one directory per major version.
BINDIR_GLOB = "/usr/lib/postgresql/*/bin"
#: Overrides the binary search, e.g. for a source build or another distribution's layout.
BINDIR_ENV = "CRASHDB_PG_BINDIR"
#: The user server commands run as when we are root.
SYSTEM_USER = "postgres"

DATA_SUBDIR = "data"
LOG_NAME = "postgres.log"
PORT_NAME = "port"

#: Server settings; throwaway, so durability is traded for speed. A commit is still written to
#: the OS (not fsynced) before it returns once ``synchronous_commit`` is on, so it survives
#: ``crash()`` - but with it off, as here, the last ~0.6s of commits may be lost on a crash.
DEFAULT_SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "128MB",
}

#: Unix socket paths longer than this would overflow sun_path (108 bytes with the file name).
_MAX_SOCKET_DIR = 90


def findPostgresBinDir() -> str | None:
    """Return the directory holding ``initdb``/``pg_ctl`` of the newest installed PostgreSQL.

    Looks at ``$CRASHDB_PG_BINDIR``, then ``/usr/lib/postgresql/<version>/bin`` (highest
    version wins), then ``pg_ctl`` on ``$PATH``; None when there is no PostgreSQL at all.
    """
    override = os.environ.get(BINDIR_ENV)
    if override:
        return override if _hasServerBinaries(override) else None

    def versionKey(path: str) -> tuple[int, ...]:
        name = os.path.basename(os.path.dirname(path))
        return tuple(int(part) for part in re.findall(r"\d+", name))

    for candidate in sorted(glob.glob(BINDIR_GLOB), key=versionKey, reverse=True):
        if _hasServerBinaries(candidate):
            return candidate
    onPath = shutil.which("pg_ctl")
    if onPath and _hasServerBinaries(os.path.dirname(onPath)):
        return os.path.dirname(onPath)
    return None


def _hasServerBinaries(bindir: str) -> bool:
    return all(os.access(os.path.join(bindir, name), os.X_OK) for name in ("initdb", "pg_ctl"))


def freePort() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quoteSetting(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class PostgresServer:
    """A PostgreSQL cluster of our own in a temporary directory, on a free loopback port.

    ``datadir`` is the directory to own (created if missing; default: a fresh ``mkdtemp()``).
    It holds the cluster in ``data/``, the server log ``postgres.log`` and the ``port`` file,
    and ``cleanup()`` deletes it. If it already holds a cluster, ``start()`` reuses it and its
    recorded port. ``port`` defaults to a free one picked at first ``start()``.

    Also a context manager: ``with PostgresServer() as pg:`` starts, then cleans up.
    """

    #: Seconds ``start()`` waits for the server to accept connections.
    startTimeout: float = 60.0
    #: Seconds ``stop()``/``crash()`` wait for the server to go away.
    stopTimeout: float = 60.0

    def __init__(self, datadir: str | None = None, port: int | None = None) -> None:
        self.directory: str | None = os.path.abspath(datadir) if datadir else None
        self._port: int | None = port
        self._portChosen = port is None
        self._bindir: str | None = None
        #: Written to postgresql.conf when the cluster is created; change before first start.
        self.settings: dict[str, str] = dict(DEFAULT_SETTINGS)

    # -- public API ---------------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The TCP port, or None until known (``start()`` picks one)."""
        return self._port

    @property
    def url(self) -> str:
        """SQLAlchemy/libpq URL of the ``postgres`` database (user postgres, trust auth)."""
        return self.databaseUrl("postgres")

    @property
    def pgdata(self) -> str:
        """The cluster's data directory (``PGDATA``)."""
        return os.path.join(self._requireDirectory(), DATA_SUBDIR)

    @property
    def logFile(self) -> str:
        """The server's log file."""
        return os.path.join(self._requireDirectory(), LOG_NAME)

    def databaseUrl(self, name: str) -> str:
        """URL of database ``name`` on this server."""
        if self._port is None:
            self._loadPort()
        if self._port is None:
            raise RuntimeError("PostgresServer has no port yet; call start() first")
        database = urllib.parse.quote(name, safe="")
        return f"postgresql://postgres@127.0.0.1:{self._port}/{database}"

    def start(self) -> None:
        """Create the cluster on first use, start it, and wait until it accepts connections.

        Does nothing if already running. Raises RuntimeError carrying the server log's tail
        when initdb or startup fails or does not finish within ``startTimeout``.
        """
        self._prepareDirectory()
        if self._isRunning():
            return
        if not os.path.exists(os.path.join(self.pgdata, "PG_VERSION")):
            self._initdb()
        if self._port is None:
            self._loadPort()
        for attempt in range(3):
            if self._port is None:
                self._port = freePort()
                self._portChosen = True
            self._writePortFile()
            try:
                self._startServer()
                return
            except RuntimeError as e:
                # Another process may have grabbed the port we picked; pick again if it was ours.
                if attempt < 2 and self._portChosen and "already in use" in str(e):
                    self._port = None
                    continue
                raise

    def stop(self) -> None:
        """Shut the server down cleanly (``pg_ctl stop -m fast``); a no-op if not running."""
        self._stop("fast")

    def crash(self) -> None:
        """Kill the server without a checkpoint (``pg_ctl stop -m immediate``), keeping its data.

        The next ``start()``/``restart()`` runs crash recovery, as after a real crash.
        """
        self._stop("immediate")

    def restart(self) -> None:
        """Start again on the same port and data directory (stopping first if running)."""
        if self.directory is None:
            raise RuntimeError("PostgresServer was never started")
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server if running and delete its directory; safe to call more than once."""
        if self.directory is None or not os.path.isdir(self.directory):
            return
        try:
            self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def createDatabase(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (optionally from ``template``) and return its URL.

        PostgreSQL refuses to copy a template that has open connections, so close them first.
        """
        import psycopg2
        from psycopg2 import sql

        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn = psycopg2.connect(self.url, connect_timeout=10)
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()
        return self.databaseUrl(name)

    def startReplica(self) -> PostgresServer:
        """A streaming hot standby of this (running) server, started on a port of its own:
        ``pg_basebackup -R`` into a new directory. The caller cleans it up."""
        replica = PostgresServer()
        replica.settings = dict(self.settings)
        replica._prepareDirectory()
        result = replica._run(
            [self._binary("pg_basebackup"), "--pgdata", replica.pgdata, "--host", "127.0.0.1",
             "--port", str(self.port), "--username", "postgres", "--write-recovery-conf",
             "--wal-method", "stream", "--checkpoint", "fast", "--no-sync"],
            timeout=self.startTimeout,
        )
        if result.returncode != 0:
            replica.cleanup()
            raise RuntimeError(f"pg_basebackup failed ({result.returncode}):\n{_output(result)}")
        directory = replica._requireDirectory()
        with open(os.path.join(replica.pgdata, "postgresql.conf"), "a") as conf:
            socketDir = directory if len(directory) < _MAX_SOCKET_DIR else ""
            conf.write(f"\nunix_socket_directories = {_quoteSetting(socketDir)}\n"
                       "hot_standby = on\n")
        replica.start()
        return replica

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        excType: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"<PostgresServer dir={self.directory!r} port={self._port}>"

    # -- internals ----------------------------------------------------------------------------

    def _requireDirectory(self) -> str:
        if self.directory is None:
            raise RuntimeError("PostgresServer has no directory yet; call start() first")
        return self.directory

    def _binary(self, name: str) -> str:
        if self._bindir is None:
            self._bindir = findPostgresBinDir()
            if self._bindir is None:
                raise RuntimeError(
                    f"no PostgreSQL server binaries found (looked in ${BINDIR_ENV}, "
                    f"{BINDIR_GLOB} and $PATH); install e.g. postgresql-15"
                )
        return os.path.join(self._bindir, name)

    @staticmethod
    def _asRoot() -> bool:
        return os.geteuid() == 0

    def _prepareDirectory(self) -> None:
        """Create the directory and, as root, hand it to the postgres user."""
        if self.directory is None:
            self.directory = tempfile.mkdtemp(prefix="crashdb-pg-")
        else:
            os.makedirs(self.directory, exist_ok=True)
        if not self._asRoot():
            return
        try:
            user = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise RuntimeError(
                f"running as root, but there is no {SYSTEM_USER!r} user to run PostgreSQL as "
                "(initdb refuses to run as root)"
            ) from None
        os.chown(self.directory, user.pw_uid, user.pw_gid)
        os.chmod(self.directory, 0o700)
        # The postgres user must be able to reach the directory through all its parents.
        probe = self._run(["test", "-w", self.directory, "-a", "-x", self.directory])
        if probe.returncode != 0:
            raise RuntimeError(
                f"user {SYSTEM_USER!r} cannot reach {self.directory}: a parent directory is "
                "not traversable (needs o+x); choose a directory under /tmp or fix permissions"
            )

    def _command(self, args: list[str]) -> list[str]:
        if self._asRoot():
            return ["runuser", "-u", SYSTEM_USER, "--", *args]
        return args

    def _run(self, args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return subprocess.run(
            self._command(args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=self.directory,  # the postgres user may not be able to enter our cwd
            env=env,
            timeout=timeout,
        )

    def _initdb(self) -> None:
        result = self._run(
            [
                self._binary("initdb"),
                "--pgdata",
                self.pgdata,
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",  # throwaway: skip fsyncing the new cluster
            ],
            timeout=self.startTimeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{_output(result)}")
        settings = dict(self.settings)
        socketDir = self._requireDirectory()
        settings["unix_socket_directories"] = socketDir if len(socketDir) < _MAX_SOCKET_DIR else ""
        lines = [f"{key} = {_quoteSetting(value)}" for key, value in settings.items()]
        # Appending as root keeps the file's owner (postgres) and mode.
        with open(os.path.join(self.pgdata, "postgresql.conf"), "a") as conf:
            conf.write("\n# crashdb.test.util.pgserver\n" + "\n".join(lines) + "\n")

    def _startServer(self) -> None:
        # On failure, show only what this attempt logged, not earlier starts.
        logSize = os.path.getsize(self.logFile) if os.path.exists(self.logFile) else 0
        try:
            result = self._run(
                [
                    self._binary("pg_ctl"),
                    "start",
                    "--pgdata",
                    self.pgdata,
                    "--log",
                    self.logFile,
                    "--options",
                    f"-p {self._port}",
                    "--wait",
                    "--timeout",
                    str(int(self.startTimeout)),
                ],
                timeout=self.startTimeout + 10,
            )
            failure = None if result.returncode == 0 else _output(result)
        except subprocess.TimeoutExpired:
            failure = "pg_ctl start did not return"
        if failure is None:
            failure = self._waitForConnections()
        if failure is not None:
            self._stop("immediate")  # do not leak a half-started server
            raise RuntimeError(
                f"PostgreSQL failed to start on port {self._port} in {self.directory}:\n"
                f"{failure}\n--- {self.logFile} (tail) ---\n{self._logTail(logSize)}"
            )

    def _waitForConnections(self) -> str | None:
        """Return None once a TCP connection succeeds, else why not (after startTimeout)."""
        import psycopg2

        deadline = time.monotonic() + self.startTimeout
        while True:
            try:
                psycopg2.connect(self.url, connect_timeout=5).close()
                return None
            except psycopg2.OperationalError as e:
                if time.monotonic() > deadline:
                    return f"no connection to {self.url} within {self.startTimeout}s: {e}"
            time.sleep(0.05)

    def _stop(self, mode: str) -> None:
        if self.directory is None or not self._isRunning():
            return
        result = self._run(
            [
                self._binary("pg_ctl"),
                "stop",
                "--pgdata",
                self.pgdata,
                "--mode",
                mode,
                "--wait",
                "--timeout",
                str(int(self.stopTimeout)),
            ],
            timeout=self.stopTimeout + 10,
        )
        if result.returncode != 0 and self._isRunning():
            raise RuntimeError(
                f"pg_ctl stop -m {mode} failed:\n{_output(result)}\n"
                f"--- {self.logFile} (tail) ---\n{self._logTail()}"
            )

    def _isRunning(self) -> bool:
        """Whether postmaster.pid names a live process (no subprocess needed)."""
        if self.directory is None:
            return False
        try:
            with open(os.path.join(self.pgdata, "postmaster.pid")) as f:
                pid = int(f.readline())
        except (OSError, ValueError):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # alive, just not ours to signal
        return True

    def _loadPort(self) -> None:
        if self.directory is None:
            return
        try:
            with open(os.path.join(self.directory, PORT_NAME)) as f:
                self._port = int(f.read().strip())
            self._portChosen = False
        except (OSError, ValueError):
            pass

    def _writePortFile(self) -> None:
        with open(os.path.join(self._requireDirectory(), PORT_NAME), "w") as f:
            f.write(f"{self._port}\n")

    def _logTail(self, offset: int = 0, lines: int = 40) -> str:
        try:
            with open(self.logFile, errors="replace") as f:
                f.seek(offset)
                return "".join(f.readlines()[-lines:]) or "(empty)"
        except OSError as e:
            return f"(no log: {e})"


def _output(result: subprocess.CompletedProcess) -> str:
    return ((result.stdout or "") + (result.stderr or "")).strip()


def main(argv: list[str] | None = None) -> int:
    """``start --dir DIR``: initdb+start, print the URL; ``stop --dir DIR``: stop, delete DIR."""
    parser = argparse.ArgumentParser(
        prog="python -m crashdb.test.util.pgserver",
        description="Run a throwaway PostgreSQL server for tests, benchmarks and CI.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    startParser = sub.add_parser("start", help="create (if needed) and start; print the URL")
    startParser.add_argument("--dir", required=True, help="directory to keep the cluster in")
    startParser.add_argument("--port", type=int, help="TCP port (default: a free one)")
    stopParser = sub.add_parser("stop", help="stop the server and delete its directory")
    stopParser.add_argument("--dir", required=True, help="directory given to start")
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            server = PostgresServer(datadir=args.dir, port=args.port)
            server.start()
            print(server.url, flush=True)
        else:
            PostgresServer(datadir=args.dir).cleanup()
    except RuntimeError as e:
        print(f"pgserver: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
