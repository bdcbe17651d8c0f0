"""rawcrashes."""

from crashdb.base import DBConnectorComponent


class RawCrashesConnectorComponent(DBConnectorComponent):
    """rawcrashes."""
