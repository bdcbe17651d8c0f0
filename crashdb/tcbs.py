"""Top crashers by signature (issue 6 fills in the methods)."""

from crashdb.base import DBConnectorComponent


class TcbsConnectorComponent(DBConnectorComponent):
    """The daily top-crashers rollup and its ranked reads."""
