"""Jobs: the processing queue (issue 5 fills in the methods)."""

from crashdb.base import DBConnectorComponent


class JobsConnectorComponent(DBConnectorComponent):
    """The processing queue: one job per crash uuid, claimed by at most one processor."""
