"""The SVG helpers of crash-stats: escaped text, every point drawn, gaps for unknown values."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from crashdb.app.web import svg

NS = "{http://www.w3.org/2000/svg}"
HOSTILE = '</title><script>alert(1)</script>"&'


def parse(markup) -> ET.Element:
    return ET.fromstring(str(markup))  # well-formed XML, or this raises


def test_sparkline_draws_every_value_and_escapes_its_label():
    root = parse(svg.sparkline([0, 3, 1, 5], HOSTILE))
    assert root.find(f"{NS}title").text == f"{HOSTILE}: 0, 3, 1, 5"
    points = root.find(f"{NS}polyline").get("points").split()
    assert len(points) == 4
    ys = [float(p.split(",")[1]) for p in points]
    assert ys[3] == min(ys) and ys[0] == max(ys)  # the highest count is drawn highest
    assert root.findall(f".//{NS}script") == []


def test_all_zero_sparkline_is_still_a_line():
    root = parse(svg.sparkline([0] * 14, "quiet"))
    assert len(root.find(f"{NS}polyline").get("points").split()) == 14


def test_line_chart_breaks_at_unknown_values_and_titles_each_point():
    points = [("d1", 1.0), ("d2", None), ("d3", 2.0), ("d4", 4.0)]
    root = parse(svg.lineChart(points, HOSTILE, unit=" <u>"))
    lines = root.findall(f"{NS}polyline")
    assert [len(line.get("points").split()) for line in lines] == [1, 2]
    titles = [c.find(f"{NS}title").text for c in root.findall(f"{NS}circle")]
    assert titles == ["d1: 1 <u>", "d3: 2 <u>", "d4: 4 <u>"]
    assert root.find(f"{NS}title").text == HOSTILE
    ticks = [t.text for t in root.findall(f"{NS}text")]
    assert "d4" in ticks and "4 <u>" in ticks


def test_bars_are_proportional_and_label_none():
    terms = [{"term": HOSTILE, "count": 10}, {"term": None, "count": 5}]
    root = parse(svg.bars(terms, "facet"))
    widths = [float(r.get("width")) for r in root.iter(f"{NS}rect")]
    assert widths[0] == 2 * widths[1]
    labels = [t.text for t in root.iter(f"{NS}text") if t.get("class") == "term"]
    assert labels == [HOSTILE[:23] + "…", "(none)"]
    assert [g.find(f"{NS}title").text for g in root.iter(f"{NS}g")] == \
        [f"{HOSTILE}: 10", "(none): 5"]
