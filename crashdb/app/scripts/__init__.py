"""The ``crashdb`` subcommands, one module each (see :mod:`crashdb.app.cli`)."""
