"""Rendered responses of the rollup-backed pages, kept for a few seconds.

The top-crashers, products, explosive and crash-rates pages read rollups that change when
cron runs them (hourly or daily) and ADU when it is fed (daily): rendering such a page again
for every request of the same minute only burns the server's core. :class:`ResponseCache`
keeps each rendered response for ``seconds`` counted from when its rendering *started* (so
every byte served is at most ``seconds`` older than the database it was read from: the
staleness bound), and renders a key once however many requests ask for it meanwhile.

The caller chooses the key; crash-stats keys on the full request target (path and query
string, exactly as sent) and on whether the request bore a valid token, so a page rendered for
a token-bearer is never served to anyone else, nor the other way round. Only successful
renderings are kept: a failure (bad input, a database error) goes to the requests that waited
for it, and the next request renders again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

DEFAULT_SIZE = 1000


class ResponseCache:
    """At most ``size`` responses, each fresh for ``seconds`` after its rendering started;
    ``clock`` gives the time in seconds (monotonic)."""

    def __init__(self, seconds: float, size: int = DEFAULT_SIZE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.size = size
        self.clock = clock
        # key -> (fresh until, response); insertion order is expiry order (one lifetime for all)
        self._kept: dict[Hashable, tuple[float, Any]] = {}
        # key -> the Deferreds of the requests waiting for its rendering under way
        self._waiting: dict[Hashable, list[defer.Deferred]] = {}

    def get(self, key: Hashable, render: Callable[[], Coroutine[Any, Any, Any]]) -> defer.Deferred:
        """Deferred of the response for ``key``: the kept one while fresh, else the result of
        the rendering under way for it, else of ``render()`` (a coroutine function) started
        now."""
        kept = self._kept.get(key)
        if kept is not None and self.clock() < kept[0]:
            return defer.succeed(kept[1])
        waiter: defer.Deferred = defer.Deferred()
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append(waiter)
            return waiter
        # the rendering runs on its own: a waiter cancelled (its client gone) does not stop it
        self._waiting[key] = [waiter]
        started = self.clock()
        defer.ensureDeferred(render()).addBoth(self._rendered, key, started)
        return waiter

    def _rendered(self, result: Any, key: Hashable, started: float) -> None:
        waiters = self._waiting.pop(key)
        if not isinstance(result, Failure):
            self._keep(key, started + self.seconds, result)
        for waiter in waiters:
            if waiter.called:  # cancelled
                continue
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    def _keep(self, key: Hashable, until: float, response: Any) -> None:
        self._kept.pop(key, None)
        self._kept[key] = (until, response)
        while len(self._kept) > self.size:  # drop the oldest, the first to expire
            del self._kept[next(iter(self._kept))]
