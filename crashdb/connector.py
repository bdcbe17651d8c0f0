"""The DBConnector: the root of crashdb's API, one component per table family."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet import defer

from crashdb.backends import Backend, createEngine, parseUrl, resolveReplicaUrls, resolveUrl
from crashdb.crashrates import CrashRatesConnectorComponent
from crashdb.exceptions import DatabaseNotReadyError, InvalidInputError
from crashdb.extensions import ExtensionsConnectorComponent
from crashdb.jobs import JobsConnectorComponent
from crashdb.partitions import PartitionsConnectorComponent
from crashdb.plugins import PluginsConnectorComponent
from crashdb.pool import DBThreadPool, Pool, Replica
from crashdb.processors import ProcessorsConnectorComponent
from crashdb.rawcrashes import RawCrashesConnectorComponent
from crashdb.reports import ReportsConnectorComponent
from crashdb.rollups import RollupsConnectorComponent
from crashdb.schema import Model
from crashdb.search import SearchConnectorComponent
from crashdb.signatures import SignaturesConnectorComponent
from crashdb.tcbs import TcbsConnectorComponent
from crashdb.tokens import TokensConnectorComponent
from crashdb.versions import VersionsConnectorComponent


class DBConnector:
    """Access to one crashdb database: ``db.reports``, ``db.jobs``… each method a Deferred.

    The URL is the caller's, else ``$CRASHDB_URL``, else ``sqlite:///crashdb.sqlite``. The
    constructor does no I/O; ``setup()`` checks the schema version, ``stop()`` releases threads
    and connections. ``pool``, instead of a URL, runs the connector on a pool made elsewhere
    (its engine and backend with it): the fake passes a synchronous one.

    ``replica_urls`` (else ``$CRASHDB_REPLICA_URLS``, comma-separated) are PostgreSQL streaming
    replicas of the database: the read-only methods of reports, extensions, plugins, raw
    crashes and the rollups run on one of them (round robin) whose replay lags at most
    ``max_replica_lag`` seconds, else on the primary (docs/scaling.md).
    """

    def __init__(
        self, db_url: str | None = None, threads: int | None = None, reactor: Any = None,
        *, pool: Pool | None = None, replica_urls: Sequence[str] | None = None,
        max_replica_lag: float = 30.0,
    ) -> None:
        if pool is None:
            self.db_url = resolveUrl(db_url)
            engine, backend, threads = createEngine(self.db_url, threads)
            replicas = [Replica(*createEngine(url, threads)[:2])
                        for url in _replicaUrls(backend, resolveReplicaUrls(replica_urls))]
            if isinstance(max_replica_lag, bool) or not isinstance(max_replica_lag, int | float) \
                    or max_replica_lag < 0:
                raise InvalidInputError("must be a number of seconds >= 0",
                                        field="max_replica_lag")
            pool = DBThreadPool(engine, backend, threads, reactor, replicas, max_replica_lag)
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
        self.tokens = TokensConnectorComponent(self)
        self.signatures = SignaturesConnectorComponent(self)
        self.rollups = RollupsConnectorComponent(self)
        self.crashrates = CrashRatesConnectorComponent(self)
        self.search = SearchConnectorComponent(self)

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


def _replicaUrls(backend: Backend, urls: Sequence[str]) -> list[str]:
    """``urls``, checked to name replicas of a database of ``backend``."""
    for url in urls:
        if not backend.supportsReplicas or parseUrl(url).get_backend_name() != backend.name:
            raise InvalidInputError(
                f"{url!r} cannot be a replica of a {backend.name} database: read replicas are "
                "PostgreSQL streaming replicas of a PostgreSQL primary", field="replica_urls")
    return list(urls)
