"""crashdb: the storage layer of a crash-report pipeline.

A Buildbot-style :class:`crashdb.connector.DBConnector` holds one connector component per table
family; every public method returns a Twisted Deferred whose work runs in a thread pool.
"""

__version__ = "0.1.0"
