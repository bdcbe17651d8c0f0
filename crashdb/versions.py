"""Product versions and their aliases (issue 9 fills in the methods)."""

from crashdb.base import DBConnectorComponent


class VersionsConnectorComponent(DBConnectorComponent):
    """Canonical product versions and the fuzzy strings that map to them."""
