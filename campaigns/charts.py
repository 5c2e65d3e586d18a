"""Charts for the staff console, drawn on the server as inline SVG: the geometry is worked
out here and the markup written by admin/campaigns/campaign/chart.html. Nothing runs in
the browser and nothing is fetched; each chart carries its figures as a table too."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

# The drawing's own units (the SVG's viewBox); the page scales it to its width.
WIDTH = 640
COLUMN_HEIGHT = 220
# Room for the value axis on the left and the category labels below.
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 28
# Horizontal bars: room for their labels on the left, and the height of each row.
LABEL_WIDTH = 170
ROW_HEIGHT = 26


@dataclasses.dataclass(frozen=True)
class Bar:
    """A rectangle of the chart, and what it stands for (its tooltip)."""

    x: float
    y: float
    width: float
    height: float
    label: str
    value: str

    @property
    def end(self) -> float:
        return round(self.x + self.width, 2)


@dataclasses.dataclass(frozen=True)
class Dot:
    x: float
    y: float
    label: str
    value: str


@dataclasses.dataclass(frozen=True)
class Label:
    """A piece of text on the chart (on the value axis, with a grid line across)."""

    x: float
    y: float
    text: str


@dataclasses.dataclass(frozen=True)
class Chart:
    """A chart ready to draw: its title and one-sentence description (read out by screen
    readers), its shapes, and its figures as table rows under ``columns``."""

    kind: str  # "columns", "bars" (lying down) or "line"
    key: str
    title: str
    description: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]
    height: int
    plot: tuple[float, float, float, float]  # left, top, right, bottom
    bars: list[Bar] = dataclasses.field(default_factory=list)
    lines: list[str] = dataclasses.field(default_factory=list)  # polyline points
    dots: list[Dot] = dataclasses.field(default_factory=list)
    labels: list[Label] = dataclasses.field(default_factory=list)
    value_labels: list[Label] = dataclasses.field(default_factory=list)
    width: int = WIDTH

    @property
    def view_box(self) -> str:
        return f"0 0 {self.width} {self.height}"

    @property
    def has_data(self) -> bool:
        return bool(self.dots) or any(bar.width and bar.height for bar in self.bars)

    @property
    def middle(self) -> tuple[float, float]:
        """The middle of the plot, where a chart without data says so."""
        left, top, right, bottom = self.plot
        return round((left + right) / 2, 2), round((top + bottom) / 2, 2)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that is at least ``value`` (1 for
    nothing), so that the value axis ends on a round number."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def _value_axis(
    *,
    top: float,
    bottom: float,
    left: float,
    maximum: float,
    steps: tuple[float, ...],
    text: Callable[[float], str],
) -> list[Label]:
    """Labels and grid lines of a vertical value axis at each of ``steps``."""
    return [
        Label(
            x=left - 6,
            y=round(bottom - (bottom - top) * step / maximum, 2),
            text=text(step),
        )
        for step in steps
    ]


def _count_steps(maximum: float) -> tuple[float, ...]:
    half = maximum / 2
    return (0, half, maximum) if half == int(half) else (0, maximum)


def column_chart(
    *,
    key: str,
    title: str,
    description: str,
    columns: tuple[str, str],
    points: list[tuple[str, int]],
    label_every: int = 1,
) -> Chart:
    """Upright bars, one per point (category label, whole-number value), left to right;
    every ``label_every``-th category is labelled under the axis."""
    left, top, right, bottom = LEFT, TOP, WIDTH - RIGHT, COLUMN_HEIGHT - BOTTOM
    maximum = nice_ceiling(max((value for _label, value in points), default=0))
    slot = (right - left) / max(1, len(points))
    bars = []
    labels = []
    for index, (label, value) in enumerate(points):
        height = (bottom - top) * value / maximum
        bars.append(
            Bar(
                x=round(left + index * slot + slot * 0.15, 2),
                y=round(bottom - height, 2),
                width=round(slot * 0.7, 2),
                height=round(height, 2),
                label=label,
                value=str(value),
            )
        )
        if index % label_every == 0:
            labels.append(Label(x=round(left + (index + 0.5) * slot, 2), y=bottom + 16, text=label))
    return Chart(
        kind="columns",
        key=key,
        title=title,
        description=description,
        columns=columns,
        rows=[(label, str(value)) for label, value in points],
        height=COLUMN_HEIGHT,
        plot=(left, top, right, bottom),
        bars=bars,
        labels=labels,
        value_labels=_value_axis(
            top=top,
            bottom=bottom,
            left=left,
            maximum=maximum,
            steps=_count_steps(maximum),
            text=lambda v: f"{v:g}",
        ),
    )


def bar_chart(
    *,
    key: str,
    title: str,
    description: str,
    columns: tuple[str, ...],
    points: list[tuple[str, int, str]],
) -> Chart:
    """Bars lying down, one row per point (label, whole-number value, the value as shown
    in its row and table), top to bottom, each with its value at its end."""
    left, top = LABEL_WIDTH, TOP
    right = WIDTH - RIGHT - 60  # room for the value written after the longest bar
    height = TOP + ROW_HEIGHT * len(points) + BOTTOM
    maximum = max((value for _label, value, _shown in points), default=0) or 1
    bars, labels = [], []
    for index, (label, value, shown) in enumerate(points):
        y = top + index * ROW_HEIGHT
        width = (right - left) * value / maximum
        bars.append(
            Bar(
                x=left,
                y=y + 4,
                width=round(width, 2),
                height=ROW_HEIGHT - 8,
                label=label,
                value=shown,
            )
        )
        labels.append(Label(x=left - 8, y=y + ROW_HEIGHT / 2 + 4, text=label))
    return Chart(
        kind="bars",
        key=key,
        title=title,
        description=description,
        columns=columns,
        rows=[(label, shown) for label, _value, shown in points],
        height=height,
        plot=(left, top, right, top + ROW_HEIGHT * len(points)),
        bars=bars,
        labels=labels,
    )


def line_chart(
    *,
    key: str,
    title: str,
    description: str,
    columns: tuple[str, ...],
    points: list[tuple[str, float | None, str]],
    label_every: int = 1,
) -> Chart:
    """A line over fractions from 0 to 1 (shown as percentages), one point per category
    (label, fraction or None, the value as shown), left to right. A None leaves a gap:
    the line is broken there, not drawn through zero."""
    left, top, right, bottom = LEFT, TOP, WIDTH - RIGHT, COLUMN_HEIGHT - BOTTOM
    slot = (right - left) / max(1, len(points))
    lines: list[str] = []
    run: list[str] = []
    dots, labels = [], []
    for index, (label, fraction, shown) in enumerate(points):
        x = round(left + (index + 0.5) * slot, 2)
        if index % label_every == 0:
            labels.append(Label(x=x, y=bottom + 16, text=label))
        if fraction is None:
            if run:
                lines.append(" ".join(run))
            run = []
            continue
        y = round(bottom - (bottom - top) * fraction, 2)
        run.append(f"{x},{y}")
        dots.append(Dot(x=x, y=y, label=label, value=shown))
    if run:
        lines.append(" ".join(run))
    return Chart(
        kind="line",
        key=key,
        title=title,
        description=description,
        columns=columns,
        rows=[(label, shown) for label, fraction, shown in points if fraction is not None],
        height=COLUMN_HEIGHT,
        plot=(left, top, right, bottom),
        lines=[line for line in lines if " " in line],  # a lone point is its dot alone
        dots=dots,
        labels=labels,
        value_labels=_value_axis(
            top=top,
            bottom=bottom,
            left=left,
            maximum=1,
            steps=(0, 0.5, 1),
            text=lambda v: f"{v * 100:g}%",
        ),
    )
