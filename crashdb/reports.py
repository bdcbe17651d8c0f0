"""reports."""

from crashdb.base import DBConnectorComponent


class ReportsConnectorComponent(DBConnectorComponent):
    """reports."""
