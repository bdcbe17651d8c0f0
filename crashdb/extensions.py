"""extensions."""

from crashdb.base import DBConnectorComponent


class ExtensionsConnectorComponent(DBConnectorComponent):
    """extensions."""
