"""Hypothesis settings shared by the wild-input suites (test_wild_input, test_web_wild,
test_web_hostile_data): few derandomized examples in CI, many random ones on demand.

``CRASHDB_WILD_PROFILE=release`` draws random examples, ``release`` of them a test;
``CRASHDB_WILD_EXAMPLES=N`` sets N whatever the profile (docs/testing.md).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def wildSettings(ci: int, release: int = 1000) -> settings:
    """The settings of a wild-input test: ``ci`` examples, the same every run, unless the
    environment asks for the release profile or another number."""
    if os.environ.get("CRASHDB_WILD_PROFILE", "ci") == "release":
        chosen = settings(max_examples=release, deadline=None,
                          suppress_health_check=list(HealthCheck))
    else:
        chosen = settings(max_examples=ci, derandomize=True, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
    if os.environ.get("CRASHDB_WILD_EXAMPLES"):
        chosen = settings(chosen, max_examples=int(os.environ["CRASHDB_WILD_EXAMPLES"]))
    return chosen
