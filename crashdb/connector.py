"""The DBConnector: the root of crashdb's API, one component per table family."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from crashdb.backends import createEngine, resolveUrl
from crashdb.exceptions import DatabaseNotReadyError
from crashdb.extensions import ExtensionsConnectorComponent
from crashdb.jobs import JobsConnectorComponent
from crashdb.partitions import PartitionsConnectorComponent
from crashdb.plugins import PluginsConnectorComponent
from crashdb.pool import DBThreadPool, Pool
from crashdb.processors import ProcessorsConnectorComponent
from crashdb.rawcrashes import RawCrashesConnectorComponent
from crashdb.reports import ReportsConnectorComponent
from crashdb.schema import Model
from crashdb.tcbs import TcbsConnectorComponent
from crashdb.versions import VersionsConnectorComponent


class DBConnector:
    """Access to one crashdb database: ``db.reports``, ``db.jobs``… each method a Deferred.

    The URL is the caller's, else ``$CRASHDB_URL``, else ``sqlite:///crashdb.sqlite``. The
    constructor does no I/O; ``setup()`` checks the schema version, ``stop()`` releases threads
    and connections. ``pool``, instead of a URL, runs the connector on a pool made elsewhere
    (its engine and backend with it): the fake passes a synchronous one.
    """

    def __init__(
        self, db_url: str | None = None, threads: int | None = None, reactor: Any = None,
        *, pool: Pool | None = None,
    ) -> None:
        if pool is None:
            self.db_url = resolveUrl(db_url)
            engine, backend, threads = createEngine(self.db_url, threads)
            pool = DBThreadPool(engine, backend, threads, reactor)
        else:
            self.db_url = pool.engine.url.render_as_string(hide_password=False)
        self.pool = pool
        self.engine = pool.engine
        self.backend = pool.backend
        self.model = Model(self)
        self.partitions = PartitionsConnectorComponent(self)
        self.reports = ReportsConnectorComponent(self)
        self.extensions = ExtensionsConnectorComponent(self)
        self.plugins = PluginsConnectorComponent(self)
        self.rawcrashes = RawCrashesConnectorComponent(self)
        self.processors = ProcessorsConnectorComponent(self)
        self.jobs = JobsConnectorComponent(self)
        self.tcbs = TcbsConnectorComponent(self)
        self.versions = VersionsConnectorComponent(self)

    @defer.inlineCallbacks
    def setup(self, check_version: bool = True) -> Any:
        """Get ready to serve; with ``check_version``, fail with DatabaseNotReadyError unless
        the schema is current. Tools that upgrade pass ``check_version=False``."""
        if check_version:
            missing = self.backend.missingDatabase()
            if missing is not None:  # connecting would create an empty one
                raise DatabaseNotReadyError(
                    f"there is no database at {missing}: run `crashdb upgrade-db`")
            current = yield self.model.is_current()
            if not current:
                raise DatabaseNotReadyError(
                    f"the database at {self.engine.url!r} is not at the current schema version: "
                    "run `crashdb upgrade-db`"
                )

    def stop(self) -> defer.Deferred:
        """Let queued work finish, stop the threads and dispose of the engine."""
        return self.pool.stop()
