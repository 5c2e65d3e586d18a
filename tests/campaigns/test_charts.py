"""The staff console's charts: the geometry the SVG templates draw."""

from __future__ import annotations

import pytest

from campaigns.charts import bar_chart, column_chart, line_chart, nice_ceiling


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (10, 10), (11, 20), (230, 500)],
)
def test_nice_ceiling_ends_the_axis_on_a_round_number(value, expected) -> None:
    assert nice_ceiling(value) == expected


def test_column_chart_scales_bars_to_the_axis() -> None:
    chart = column_chart(
        key="k",
        title="T",
        description="D",
        columns=("Hour", "Calls"),
        points=[("10:00", 0), ("11:00", 5), ("12:00", 10)],
        label_every=2,
    )

    _left, top, _right, bottom = chart.plot
    heights = [bar.height for bar in chart.bars]
    assert heights == [0, (bottom - top) / 2, bottom - top]
    assert all(bar.y + bar.height == pytest.approx(bottom) for bar in chart.bars)
    assert [label.text for label in chart.labels] == ["10:00", "12:00"]
    assert [label.text for label in chart.value_labels] == ["0", "5", "10"]
    assert chart.rows == [("10:00", "0"), ("11:00", "5"), ("12:00", "10")]
    assert chart.has_data


def test_bar_chart_gives_the_longest_bar_the_whole_width() -> None:
    chart = bar_chart(
        key="k",
        title="T",
        description="D",
        columns=("Outcome", "Calls"),
        points=[("Busy", 2, "2 (40%)"), ("Answered", 3, "3 (60%)"), ("Failed", 0, "0 (0%)")],
    )

    widths = [bar.width for bar in chart.bars]
    assert widths[1] == chart.plot[2] - chart.plot[0]
    assert widths[0] == pytest.approx(widths[1] * 2 / 3, abs=0.01)
    assert widths[2] == 0
    assert chart.height > 3 * 20


def test_line_chart_breaks_where_a_value_is_missing() -> None:
    chart = line_chart(
        key="k",
        title="T",
        description="D",
        columns=("Hour", "Rate"),
        points=[("1", 0.5, "50%"), ("2", 1.0, "100%"), ("3", None, "—"), ("4", 0.0, "0%")],
    )

    assert len(chart.lines) == 1  # the first two hours; the last is a dot alone
    assert len(chart.lines[0].split()) == 2
    assert [dot.value for dot in chart.dots] == ["50%", "100%", "0%"]
    assert chart.rows == [("1", "50%"), ("2", "100%"), ("4", "0%")]
    bottom, top = chart.plot[3], chart.plot[1]
    assert [dot.y for dot in chart.dots] == [(bottom + top) / 2, top, bottom]


def test_a_chart_without_data_says_so() -> None:
    chart = column_chart(
        key="k", title="T", description="D", columns=("a", "b"), points=[("1", 0), ("2", 0)]
    )

    assert not chart.has_data
