"""``crashdb adu import`` and ``crashdb explosive`` on both backends; errors are one line."""

from __future__ import annotations

import datetime

import pytest
import sqlalchemy as sa

from crashdb import model
from crashdb.backends import createEngine
from crashdb.test.test_cli import crashdb

DAY = datetime.timedelta(days=1)
SCORED = datetime.date(2012, 10, 22)
WINDOW = [SCORED - (9 - k) * DAY for k in range(10)]
backends = pytest.mark.parametrize("dbUrl", ["sqlite", "postgresql"], indirect=True)


def storedAdu(url: str) -> list[tuple]:
    engine, _, _ = createEngine(url)
    try:
        with engine.connect() as conn:
            table = model.product_adu
            query = sa.select(table).order_by(table.c.day, table.c.product, table.c.version)
            return [tuple(row) for row in conn.execute(query)]
    finally:
        engine.dispose()


def writeCsv(path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@backends
def test_adu_import_stores_the_file_and_a_second_import_replaces_rows(dbUrl, tmp_path):
    first = writeCsv(tmp_path / "adu.csv", [
        "day,product,version,adu",
        "2012-10-21,Firefox,16.0,100000",
        "2012-10-21,Firefox,17.0b3,25000",
        "",
        "2012-10-22,Thunderbird,16.0.2,9000",
    ])
    result = crashdb("adu", "import", first, "--db", dbUrl)
    assert result.returncode == 0, result.stderr
    assert "stored ADU for 3" in result.stdout
    assert storedAdu(dbUrl) == [
        (datetime.date(2012, 10, 21), "Firefox", "16.0", 100000),
        (datetime.date(2012, 10, 21), "Firefox", "17.0b3", 25000),
        (datetime.date(2012, 10, 22), "Thunderbird", "16.0.2", 9000),
    ]
    second = writeCsv(tmp_path / "fix.csv", [
        "day,product,version,adu", "2012-10-21,Firefox,16.0,120000"])
    assert crashdb("adu", "import", second, "--db", dbUrl).returncode == 0
    assert storedAdu(dbUrl)[0] == (datetime.date(2012, 10, 21), "Firefox", "16.0", 120000)


@pytest.mark.parametrize("lines,line,message", [
    (["day,product,version,adu", "2012-10-21,Firefox,16.0,5", "2012-10-21,Firefox,17.0,-3"],
     3, "adu: must be 0 or more"),
    (["day,product,version,adu", "2012-10-21,Firefox,16.0,5", "2012-10-21,Firefox,16.0,lots"],
     3, "adu: expected a whole number"),
    (["day,product,version,adu", "21/10/2012,Firefox,16.0,5"], 2, "day: expected YYYY-MM-DD"),
    (["day,product,version,adu", "2012-02-30,Firefox,16.0,5"], 2, "day: day is out of range"),
    (["day,product,version,adu", "", "2012-10-21,Firefox,16.0"], 3, "expected 4 values"),
    (["day,product,version,adu", "2012-10-21,,16.0,5"], 2, "product: is empty"),
    (["day,product,version,adu", "2012-10-21,Firefox," + "9" * 17 + ",5"], 2,
     "version: longer than 16"),
    (["day,product,adu,version"], 1, "expected the header day,product,version,adu"),
])
@backends
def test_a_bad_line_rejects_the_whole_file(dbUrl, tmp_path, lines, line, message):
    path = writeCsv(tmp_path / "bad.csv", lines)
    result = crashdb("adu", "import", path, "--db", dbUrl)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"crashdb: error: {path}, line {line}: ")
    assert message in lines[0]
    assert storedAdu(dbUrl) == []


def test_adu_import_of_a_missing_file_is_one_line(tmp_path):
    result = crashdb("adu", "import", str(tmp_path / "nothing.csv"),
                     "--db", f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert "No such file" in result.stderr


def seedWorkedExample(url: str, tmp_path) -> None:
    """docs/components/crashrates.md's example, a steady signature, and ten days of ADU."""
    engine, _, _ = createEngine(url)
    spike = [12, 15, 9, 14, 11, 13, 10, 16, 12, 240]
    try:
        with engine.begin() as conn:
            for day, count in zip(WINDOW, spike, strict=True):
                for signature, crashes in (("js::Spike", count), ("steady", 20)):
                    conn.execute(model.tcbs.insert().values(
                        day=day, product="Firefox", version="16.0", signature=signature,
                        count=crashes, win_count=0, mac_count=0, lin_count=0, hang_count=0,
                        startup_count=0))
    finally:
        engine.dispose()
    lines = ["day,product,version,adu"] + [f"{day},Firefox,16.0,100000" for day in WINDOW]
    result = crashdb("adu", "import", writeCsv(tmp_path / "adu.csv", lines), "--db", url)
    assert result.returncode == 0, result.stderr


@backends
def test_explosive_prints_the_worked_example(dbUrl, tmp_path):
    seedWorkedExample(dbUrl, tmp_path)
    result = crashdb("explosive", "--product", "Firefox", "--day", "2012-10-22", "--db", dbUrl)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == ("Explosive crashes: Firefox (all versions) on 2012-10-22 (UTC), "
                        "rates per million ADU")
    assert lines[3].split() == ["7.5852", "2.5778", "12", "15", "9", "14", "11", "13", "10",
                                "16", "12", "240", "js::Spike"]
    assert len(lines) == 4  # the steady signature scores 0
    quiet = crashdb("explosive", "--product", "Firefox", "--day", "2012-10-30", "--db", dbUrl)
    assert quiet.returncode == 0 and "no signature scored above 0" in quiet.stdout
    assert "crash counts (ADU not known all ten days)" in quiet.stdout


@pytest.mark.parametrize("arguments,message", [
    (["--day", "yesterday"], "--day must be a date as YYYY-MM-DD"),
    (["--limit", "0"], "--limit must be at least 1"),
    (["--limit", "9" * 20], "field 'limit': integer out of range (99999999999999999999)"),
    (["--day", "0001-01-01"], "out of range: give a day from 1000-01-06"),
    (["--version", "x" * 17], "longer than 16"),
])
def test_explosive_mistakes_are_one_line(dbUrl, arguments, message):
    result = crashdb("explosive", "--product", "Firefox", *arguments, "--db", dbUrl)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr
