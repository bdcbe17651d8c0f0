"""crash-stats: the web front end of crashdb (``crashdb serve``, SPEC 16).

:class:`~crashdb.app.web.server.CrashStats` answers pages and JSON from the public component
API; :mod:`~crashdb.app.web.svg` draws the graphs; :mod:`~crashdb.app.web.privacy` keeps
personal data to requests bearing an API token; :mod:`~crashdb.app.web.cache` keeps the
rollup-backed pages rendered for a bounded time.
"""

from crashdb.app.web.server import CrashStats

__all__ = ["CrashStats"]
