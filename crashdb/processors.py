"""Processors: the workers that claim jobs (issue 5 fills in the methods)."""

from crashdb.base import DBConnectorComponent


class ProcessorsConnectorComponent(DBConnectorComponent):
    """Registered processors, their liveness, and the release of a dead one's claims."""
