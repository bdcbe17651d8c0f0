"""plugins."""

from crashdb.base import DBConnectorComponent


class PluginsConnectorComponent(DBConnectorComponent):
    """plugins."""
