"""Behaviour of the ``versions`` component: canonical versions and their aliases."""

from __future__ import annotations

import csv
import io

import pytest
import pytest_twisted
import sqlalchemy as sa

from crashdb import model
from crashdb.exceptions import InvalidInputError
from crashdb.test.fake import fakedb

pytestmark = pytest.mark.citus  # also on a coordinator with two workers (SPEC 17)


@pytest_twisted.inlineCallbacks
def test_add_product_version_is_find_or_create(db):
    first = yield db.versions.addProductVersion("Firefox", "4.0")
    again = yield db.versions.addProductVersion("Firefox", " 4.0 ")
    other = yield db.versions.addProductVersion("Thunderbird", "4.0")
    assert first == again
    assert other != first
    versions = yield db.versions.getProductVersions()
    assert [(v["product"], v["version"]) for v in versions] == [
        ("Firefox", "4.0"),
        ("Thunderbird", "4.0"),
    ]


@pytest_twisted.inlineCallbacks
def test_add_product_version_race_is_settled_by_the_unique_index(db):
    def race(conn):
        db.versions._race_hook = None
        conn.execute(model.product_versions.insert().values(product="Firefox", version="5.0"))

    db.versions._race_hook = race
    try:
        found = yield db.versions.addProductVersion("Firefox", "5.0")
    finally:
        db.versions._race_hook = None
    versions = yield db.versions.getProductVersions("Firefox")
    assert [v["id"] for v in versions] == [found]


@pytest_twisted.inlineCallbacks
def test_canonical_exact_match_comes_before_alias_and_ignores_white_space(db):
    yield db.versions.addProductVersion("Firefox", "4.0b1")
    yield db.versions.addVersionAlias("Firefox", "4.0 Beta 1", "4.0b1")
    assert (yield db.versions.canonicalVersion("Firefox", "4.0b1")) == "4.0b1"
    assert (yield db.versions.canonicalVersion("Firefox", "  4.0b1\t")) == "4.0b1"
    assert (yield db.versions.canonicalVersion("Firefox", "4.0 Beta 1 ")) == "4.0b1"
    assert (yield db.versions.canonicalVersion("Firefox", "4.0 beta 1")) is None
    assert (yield db.versions.canonicalVersion("Thunderbird", "4.0b1")) is None
    assert (yield db.versions.canonicalVersion("Firefox", None)) is None


@pytest_twisted.inlineCallbacks
def test_alias_creates_its_canonical_version_and_is_stored_stripped(db):
    version_id = yield db.versions.addVersionAlias("Firefox", " 16.0.1pre ", "16.0.1")
    versions = yield db.versions.getProductVersions("Firefox")
    assert versions == [{"id": version_id, "product": "Firefox", "version": "16.0.1"}]
    aliases = yield db.versions.getVersionAliases("Firefox")
    assert aliases == [
        {"product": "Firefox", "alias": "16.0.1pre", "version_id": version_id, "version": "16.0.1"}
    ]


@pytest_twisted.inlineCallbacks
def test_remapping_an_alias_replaces_its_target(db):
    yield db.versions.addVersionAlias("Firefox", "3.6pre", "3.6")
    yield db.versions.addVersionAlias("Firefox", "3.6pre", "3.6.1")
    assert (yield db.versions.canonicalVersion("Firefox", "3.6pre")) == "3.6.1"
    aliases = yield db.versions.getVersionAliases()
    assert len(aliases) == 1


@pytest_twisted.inlineCallbacks
def test_alias_equal_to_its_version_stores_no_alias(db):
    yield db.versions.addVersionAlias("Firefox", "3.6 ", "3.6")
    assert (yield db.versions.getVersionAliases()) == []
    assert (yield db.versions.canonicalVersion("Firefox", "3.6")) == "3.6"


@pytest_twisted.inlineCallbacks
def test_alias_that_is_another_canonical_version_is_rejected(db):
    yield db.versions.addProductVersion("Firefox", "4.0")
    with pytest.raises(InvalidInputError) as info:
        yield db.versions.addVersionAlias("Firefox", "4.0", "4.0.1")
    assert info.value.field == "alias"
    assert (yield db.versions.getVersionAliases()) == []
    # the rejected call rolled back: its target version was not left behind
    versions = yield db.versions.getProductVersions()
    assert [v["version"] for v in versions] == ["4.0"]


@pytest_twisted.inlineCallbacks
def test_bad_arguments_are_rejected(db):
    with pytest.raises(InvalidInputError) as info:
        yield db.versions.addProductVersion("Firefox", "1.0.0.0.0.0.0.0.0")  # 17 characters
    assert info.value.field == "version"
    with pytest.raises(InvalidInputError) as info:
        yield db.versions.addProductVersion("Firefox", "   ")
    assert info.value.field == "version"
    with pytest.raises(InvalidInputError) as info:
        yield db.versions.addProductVersion("F" * 31, "1.0")
    assert info.value.field == "product"
    with pytest.raises(InvalidInputError) as info:
        yield db.versions.addVersionAlias("Firefox", "1.0\x00", "1.0")
    assert info.value.field == "alias"
    with pytest.raises(InvalidInputError):
        yield db.versions.addProductVersion("Firefox", 4)
    assert (yield db.versions.getProductVersions()) == []


@pytest_twisted.inlineCallbacks
def test_load_version_map_from_csv_rows(db):
    text = (
        "product,alias,version\n"
        "Firefox,4.0 Beta 1,4.0b1\n"
        "Firefox,4.0b1 ,4.0b1\n"
        "\n"
        "Firefox,16.0.1pre,16.0.1\n"
        "Thunderbird,3.1 final,3.1\n"
    )
    loaded = yield db.versions.loadVersionMap(csv.reader(io.StringIO(text)))
    assert loaded == 4
    assert (yield db.versions.canonicalVersion("Firefox", "4.0 Beta 1")) == "4.0b1"
    assert (yield db.versions.canonicalVersion("Firefox", "16.0.1pre")) == "16.0.1"
    assert (yield db.versions.canonicalVersion("Thunderbird", "3.1 final")) == "3.1"
    aliases = yield db.versions.getVersionAliases()
    assert [(a["product"], a["alias"]) for a in aliases] == [
        ("Firefox", "16.0.1pre"),
        ("Firefox", "4.0 Beta 1"),
        ("Thunderbird", "3.1 final"),
    ]  # "4.0b1 " is the canonical form itself once stripped


@pytest_twisted.inlineCallbacks
def test_load_version_map_accepts_dicts(db):
    rows = [{"product": "Firefox", "alias": "2.0.0.x", "version": "2.0.0.20"}]
    assert (yield db.versions.loadVersionMap(rows)) == 1
    assert (yield db.versions.canonicalVersion("Firefox", "2.0.0.x")) == "2.0.0.20"


@pytest_twisted.inlineCallbacks
def test_load_version_map_is_all_or_nothing(db):
    rows = [
        ("Firefox", "4.0 Beta 1", "4.0b1"),
        ("Firefox", "3.5 final", "3.5.0.0.0.0.0.0.0.0"),  # too long for a version
    ]
    with pytest.raises(InvalidInputError) as info:
        yield db.versions.loadVersionMap(rows)
    assert (info.value.index, info.value.field) == (1, "version")
    assert (yield db.versions.getProductVersions()) == []


@pytest_twisted.inlineCallbacks
def test_load_version_map_rejects_contradicting_rows(db):
    rows = [("Firefox", "4.0pre", "4.0"), ("Firefox", " 4.0pre", "4.0.1")]
    with pytest.raises(InvalidInputError) as info:
        yield db.versions.loadVersionMap(rows)
    assert (info.value.index, info.value.field) == (1, "alias")
    assert (yield db.versions.getVersionAliases()) == []


@pytest_twisted.inlineCallbacks
def test_load_version_map_rolls_back_when_a_row_fails_in_the_database(db):
    yield db.versions.addProductVersion("Firefox", "4.0")
    rows = [("Firefox", "4.0 final", "4.0"), ("Firefox", "4.0", "4.0.1")]
    with pytest.raises(InvalidInputError) as info:
        yield db.versions.loadVersionMap(rows)
    assert info.value.index == 1
    assert (yield db.versions.getVersionAliases()) == []


@pytest_twisted.inlineCallbacks
def test_rows_seeded_with_insert_test_data_are_found(db):
    yield db.insertTestData(
        [
            fakedb.ProductVersion(id=40, product="Firefox", version="4.0"),
            fakedb.VersionAlias(product="Firefox", alias="4.0 final", version_id=40),
        ]
    )
    assert (yield db.versions.canonicalVersion("Firefox", "4.0 final")) == "4.0"
    # ids handed out later do not collide with the seeded one
    new_id = yield db.versions.addProductVersion("Firefox", "5.0")
    assert new_id != 40


@pytest_twisted.inlineCallbacks
def test_deleting_a_version_deletes_its_aliases(db):
    version_id = yield db.versions.addVersionAlias("Firefox", "4.0 final", "4.0")

    def thd(conn):
        versions = model.product_versions
        conn.execute(sa.delete(versions).where(versions.c.id == version_id))

    yield db.pool.do(thd)
    assert (yield db.versions.getVersionAliases()) == []
