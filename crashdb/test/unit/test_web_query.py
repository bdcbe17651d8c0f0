"""Reading crash-stats query strings: search operators from value prefixes, typed values, and
bad parameters as InvalidInputError naming them."""

from __future__ import annotations

import datetime

import pytest

from crashdb.app.web.query import Query, searchFields
from crashdb.exceptions import InvalidInputError

UTC = datetime.UTC


def query(**args) -> Query:
    return Query({k.encode(): [v.encode() for v in (vs if isinstance(vs, list) else [vs])]
                  for k, vs in args.items()})


def test_operators_come_from_the_value_prefix():
    filters = query(product=["Firefox", "Thunderbird"], signature="~GC", version="!16.0",
                    reason="^EXC", uptime=">=60", build="=~literal", hangid="__exists__",
                    url="!__exists__", install_age="<5").filters()
    assert sorted(filters, key=repr) == sorted([
        ("product", "=", ["Firefox", "Thunderbird"]), ("signature", "~", "GC"),
        ("version", "!=", "16.0"), ("reason", "^", "EXC"), ("uptime", ">=", 60),
        ("build", "=", "~literal"), ("hangid", "exists", True), ("url", "exists", False),
        ("install_age", "<", 5)], key=repr)


def test_values_take_their_column_type():
    (success,), (processed,) = query(success="true").filters(), query(
        date_processed=">2026-11-30T10:00").filters()
    assert success == ("success", "=", True)
    assert processed == ("date_processed", ">", datetime.datetime(2026, 11, 30, 10, tzinfo=UTC))
    assert query(**{"raw.Theme": "12"}).filters() == [("raw.Theme", "=", "12")]


@pytest.mark.parametrize("args, field", [
    ({"uptime": ">soon"}, "uptime"), ({"success": "maybe"}, "success"),
    ({"date_processed": "yesterday"}, "date_processed"), ({"limit": "0"}, "limit"),
    ({"start": "2026-13-01"}, "start"), ({"facet_size": "x"}, "facet_size"),
])
def test_bad_values_name_their_parameter(args, field):
    with pytest.raises(InvalidInputError) as caught:
        query(**args).searchArguments()
    assert caught.value.field == field


def test_search_arguments_and_the_fields_they_name():
    arguments = query(start="2026-11-01", end="2026-11-08", facet="url,os_name",
                      column=["uuid", "email"], sort="-user_id", **{"raw.Email": "x"},
                      ).searchArguments()
    assert arguments["start"] == datetime.datetime(2026, 11, 1, tzinfo=UTC)
    assert arguments["end"] == datetime.datetime(2026, 11, 8, tzinfo=UTC)
    assert list(searchFields(arguments)) == ["raw.Email", "url", "os_name", "uuid", "email",
                                             "user_id"]
