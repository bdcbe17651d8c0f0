"""``crashdb demo``'s signature section: the regression is new and its planted add-on stands out."""

from __future__ import annotations

import os

import pytest_twisted
from twisted.internet import defer

from crashdb.app.demo import Demo
from crashdb.app.demo.generator import PLANTED_ADDON, REGRESSION
from crashdb.test.fake.fakedb import FakeDBConnector


@pytest_twisted.inlineCallbacks
def test_demo_shows_the_regression_as_new_and_its_planted_addon():
    from twisted.internet import reactor

    lines: list[str] = []
    db = FakeDBConnector()
    demo = Demo(reactor, db, crashes=1500, processors=2, seed=7, out=lines.append,
                progress_stream=open(os.devnull, "w"))
    result = yield defer.ensureDeferred(demo.run())
    text = "\n".join(lines)
    new = text.split("New signatures: Firefox 17.0b3, ")[1].splitlines()
    assert new[2].endswith(REGRESSION[0])  # the most frequent of the new signatures
    assert result.correlations and result.correlations[0]["field"] == "addon"
    assert result.correlations[0]["value"] == PLANTED_ADDON[0]
    assert f"Correlations of {REGRESSION[0]}: Firefox 17.0b3, " in text
    assert text.count(f"addon = {PLANTED_ADDON[0]}") == 1
