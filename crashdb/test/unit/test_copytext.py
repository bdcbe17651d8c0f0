"""The COPY text format (crashdb.bulk.copytext), without a database."""

from __future__ import annotations

import datetime
import enum
import itertools
import random

import pytest

from crashdb import model
from crashdb.bulk import copytext
from crashdb.exceptions import InvalidInputError
from crashdb.reports import (
    EXTENSION_FIELDS,
    REPORT_FIELDS,
    VALUE_FIELDS,
    _extensionEncoder,
    _reportEncoder,
    _reportValidator,
)

UTC = datetime.UTC
TOKYO = datetime.timezone(datetime.timedelta(hours=9))
NASTY = ["back\\slash", "tab\there", "new\nline", "cr\rhere", "\\N", "\\", "", "✓ ünï",
         "\\t", "\r\n\t\\\\", "\x01"]


def unescape(field: str) -> str | None:
    """PostgreSQL's reading of one field of COPY text (the escapes crashdb writes)."""
    if field == "\\N":
        return None
    out, chars = [], iter(field)
    for char in chars:
        if char == "\\":
            char = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[next(chars)]
        out.append(char)
    return "".join(out)


@pytest.mark.parametrize("text", NASTY)
def test_escaped_text_reads_back_as_itself(text):
    escaped = copytext.escape(text)
    assert not {"\t", "\n", "\r"} & set(escaped)
    assert unescape(escaped) == text


def test_a_line_has_one_field_per_column_read_back_as_given():
    formatter = copytext.CopyFormatter(model.extensions, [c.name for c in model.extensions.c])
    when = datetime.datetime(2012, 10, 16, 10, 30, 0, 5, tzinfo=TOKYO)
    for text in NASTY:
        line = formatter.line([7, when, 2, text, None])
        fields = line.split("\t")
        assert [unescape(f) for f in fields] == [
            "7", "2012-10-16T01:30:00.000005+00:00", "2", text, None]
    assert formatter.text([[1, when, 0, "a", "b"]] * 2).count("\n") == 2


def test_booleans_and_dates_and_json():
    table = model.metadata.tables["jobs"]
    formatter = copytext.CopyFormatter(table, ["complete", "success", "message"])
    assert formatter.line([True, False, None]) == "t\tf\t\\N"
    raw = copytext.CopyFormatter(model.raw_crashes, ["raw_crash"])
    assert unescape(raw.line([{"a": "x\ty"}])) == '{"a": "x\\ty"}'
    tcbs = copytext.CopyFormatter(model.metadata.tables["tcbs"], ["day"])
    assert tcbs.line([datetime.date(2012, 10, 16)]) == "2012-10-16"


class Colour(enum.StrEnum):
    RED = "red"


class Count(enum.IntEnum):
    ONE = 1


class Moment(datetime.datetime):
    pass


class Floating(datetime.tzinfo):
    def utcoffset(self, dt):
        return None


VALID = {
    "uuid": "00000000-0000-0000-0000-000000000001",
    "date_processed": datetime.datetime(2012, 10, 16, 10, 30, tzinfo=UTC),
    "client_crash_date": datetime.datetime(2012, 10, 16, 19, 30, tzinfo=TOKYO),
    "product": "Firefox", "uptime": 5, "success": True, "truncated": False,
    "processor_notes": "notes", "user_comments": "multi\nline\\",
}
ODD_VALUES = [
    None, "", "x", "x" * 30, "x" * 31, "x" * 300, "nul\x00", *NASTY, 0, 1, -1, 2**31 - 1, 2**31,
    -(2**31), -(2**31) - 1, True, False, 1.0, Colour.RED, Count.ONE, b"bytes", [], {},
    datetime.datetime(2012, 10, 16, 10, 30), datetime.datetime(2012, 10, 16, tzinfo=TOKYO),
    datetime.datetime(2012, 10, 16, tzinfo=Floating()), Moment(2012, 10, 16, tzinfo=UTC),
    datetime.date(2012, 10, 16),
    "foo.xpi\udf03@0x1b3c", "\ud800", "é\udfff", "😀", datetime.datetime(999, 12, 31, tzinfo=UTC),
    datetime.datetime(1000, 1, 6, tzinfo=UTC), datetime.datetime(1000, 1, 5, 23, tzinfo=TOKYO),
    datetime.datetime(9999, 12, 26, 23, tzinfo=UTC), datetime.datetime(9999, 12, 27, tzinfo=TOKYO),
    datetime.datetime(1, 1, 1, tzinfo=TOKYO),
]


def candidates():
    yield VALID
    yield {**VALID, "id": 5}
    yield {**VALID, "unknown": 1}
    yield {**VALID, "extensions": [{"extension_id": "a"}], "plugins": []}
    yield "not a dict"
    yield {key: value for key, value in VALID.items() if key != "uuid"}
    for column, value in itertools.product(["uuid", "date_processed", *VALUE_FIELDS],
                                           ODD_VALUES):
        yield {**VALID, column: value}
    rng = random.Random(8)
    for _ in range(2000):
        yield {**VALID, **{rng.choice(VALUE_FIELDS): rng.choice(ODD_VALUES) for _ in range(3)}}


def test_the_encoder_accepts_only_what_validation_accepts_and_takes_it_alike():
    formatter = copytext.formatter(model.reports, REPORT_FIELDS)
    accepted = 0
    for row in candidates():
        line = _reportEncoder.line(row, "42")
        values = _reportEncoder.values(row, 42)
        try:
            _reportValidator.validate(row)
        except InvalidInputError:
            assert line is None and values is None, row
            continue
        if line is not None:
            accepted += 1
            assert line == formatter.line([42, *map(row.get, VALUE_FIELDS)]), row
        if values is not None:
            assert values == [42, *map(row.get, VALUE_FIELDS)], row
    assert accepted > 500


def test_the_reader_hands_out_whole_lines_in_chunks_and_keeps_an_error():
    reader = copytext.CopyReader(f"line {n}" for n in range(1000))
    chunks = []
    while chunk := reader.read(100):
        chunks.append(chunk)
    assert len(chunks) > 10 and all(c.endswith("\n") for c in chunks)
    assert "".join(chunks).splitlines() == [f"line {n}" for n in range(1000)]

    def failing():
        yield "fine"
        raise ValueError("bad row")

    reader = copytext.CopyReader(failing())
    with pytest.raises(ValueError):
        reader.read(10**6)
    assert isinstance(reader.error, ValueError)


def test_the_extension_encoder_with_a_three_field_lead_agrees_with_the_formatter():
    formatter = copytext.formatter(model.extensions, EXTENSION_FIELDS)
    when = datetime.datetime(2012, 10, 16, 19, 30, tzinfo=TOKYO)
    lead = f"7\t{copytext.timestamp(when)}\t2"
    for text in NASTY + ["a@b.c"]:
        for extension in ({"extension_id": text}, {"extension_id": "x", "extension_version": text},
                          {"extension_id": text, "extension_version": None}):
            line = _extensionEncoder.line(extension, lead)
            assert line == formatter.line([7, when, 2, extension["extension_id"],
                                           extension.get("extension_version")])
    for odd in ({"extension_id": None}, {"extension_id": 5}, {"extension_id": "a", "x": 1},
                {"extension_id": "nul\x00"}, {"extension_version": "1"}, ["extension_id"]):
        assert _extensionEncoder.line(odd, lead) is None
