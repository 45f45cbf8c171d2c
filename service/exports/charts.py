"""SVG charts drawn on the server: self-contained, no scripts, every text escaped."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from xml.sax.saxutils import escape

from service.exports.export import TimeSeries

CHART_WIDTH = 800
PLOT_HEIGHT = 300
MARGIN_LEFT = 64
MARGIN_RIGHT = 24
MARGIN_TOP = 56
AXIS_BAND = 64  # under the plot: tick labels and the axis title
LEGEND_ROW = 20
X_TICKS = 6
Y_TICKS = 5
MAX_BUCKETS = 2000  # points per line; more would not be visible anyway
MARKER_MAX_BUCKETS = 60  # a dot per point while there are few enough to tell apart
TITLE_MAX_CHARS = 90
LEGEND_LABEL_MAX_CHARS = 80
SVG_MIMETYPE = "image/svg+xml"
# Okabe-Ito colours stay distinguishable with the common colour-vision deficiencies;
# past eight options the dash pattern changes too.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000")
DASHES = ("", "6 3", "2 3", "8 3 2 3")
TICK_FORMATS = {"day": "%Y-%m-%d", "hour": "%m-%d %H:%M"}
# Characters XML 1.0 does not allow at all; escaping cannot save them, so they go.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: str, limit: int | None = None) -> str:
    value = NOT_XML.sub("", value)
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    return escape(value, {'"': "&quot;"})


def _nice_step(maximum: int) -> int:
    """A round step (1, 2, 5 x 10^k) giving about Y_TICKS gridlines up to `maximum`."""
    raw = max(maximum, 1) / Y_TICKS
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return max(1, int(factor * magnitude))
    return max(1, int(10 * magnitude))


def _x_ticks(count: int) -> list[int]:
    if count <= X_TICKS:
        return list(range(count))
    return sorted({round(i * (count - 1) / (X_TICKS - 1)) for i in range(X_TICKS)})


@dataclass(frozen=True)
class _Plot:
    """Where a series' buckets and vote counts fall on the chart."""

    count: int  # buckets
    top: int  # votes at the top of the y axis
    step: int  # votes between gridlines
    width: float = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    bottom: float = MARGIN_TOP + PLOT_HEIGHT

    def x(self, index: int) -> float:
        if self.count <= 1:
            return MARGIN_LEFT + self.width / 2
        return MARGIN_LEFT + index * self.width / (self.count - 1)

    def y(self, votes: int) -> float:
        return self.bottom - votes * PLOT_HEIGHT / self.top


def timeseries_svg(series: TimeSeries, *, question: str) -> str:
    """A line chart of votes per bucket per option, with axes, labels and a legend."""
    peak = max((max(votes, default=0) for votes in series.votes.values()), default=0)
    step = _nice_step(peak)
    plot = _Plot(count=len(series.buckets), top=max(step, step * math.ceil(peak / step)),
                 step=step)
    legend_top = plot.bottom + AXIS_BAND
    height = legend_top + LEGEND_ROW * len(series.options) + LEGEND_ROW // 2
    title = f"Votes per {series.interval}: {question}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{height}" '
        f'viewBox="0 0 {CHART_WIDTH} {height}" role="img" aria-labelledby="chart-title" '
        'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" '
        'font-size="12" fill="#222">',
        f'<title id="chart-title">{_text(title)}</title>',
        f'<rect width="{CHART_WIDTH}" height="{height}" fill="#fff"/>',
        f'<text x="{MARGIN_LEFT}" y="28" font-size="16" font-weight="600">'
        f"{_text(question, TITLE_MAX_CHARS)}</text>",
        *_y_axis(plot, series.interval),
        *_x_axis(plot, series),
        *_lines(plot, series),
        *_legend(series, top=legend_top),
        "</svg>\n",
    ]
    return "".join(parts)


def _y_axis(plot: _Plot, unit: str) -> list[str]:
    parts = ['<g class="y-axis" stroke="#d0d0d0">']
    for votes in range(0, plot.top + 1, plot.step):
        line_y = f"{plot.y(votes):.1f}"
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{CHART_WIDTH - MARGIN_RIGHT}" y1="{line_y}" '
            f'y2="{line_y}"/><text x="{MARGIN_LEFT - 8}" y="{line_y}" stroke="none" '
            f'text-anchor="end" dominant-baseline="middle">{votes}</text>'
        )
    parts.append("</g>")
    middle_y = MARGIN_TOP + PLOT_HEIGHT / 2
    parts.append(
        f'<text x="16" y="{middle_y:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 16 {middle_y:.1f})">Votes per {unit}</text>'
    )
    return parts


def _x_axis(plot: _Plot, series: TimeSeries) -> list[str]:
    count, bottom, unit = plot.count, plot.bottom, series.interval
    parts = [
        f'<line x1="{MARGIN_LEFT}" x2="{CHART_WIDTH - MARGIN_RIGHT}" y1="{bottom}" '
        f'y2="{bottom}" stroke="#888"/>',
        '<g class="x-axis" text-anchor="middle">',
    ]
    for index in _x_ticks(count):
        label = series.buckets[index].strftime(TICK_FORMATS[unit])
        # The last label ends at its tick so that it stays inside the picture.
        anchor = ' text-anchor="end"' if count > 1 and index == count - 1 else ""
        x = f"{plot.x(index):.1f}"
        parts.append(
            f'<line x1="{x}" x2="{x}" y1="{bottom}" y2="{bottom + 5}" stroke="#888"/>'
            f'<text x="{x}" y="{bottom + 20}"{anchor}>{_text(label)}</text>'
        )
    centre = f"{MARGIN_LEFT + plot.width / 2:.1f}"
    parts.append(f'<text x="{centre}" y="{bottom + 44}">{unit.capitalize()} (UTC)</text></g>')
    if count == 0:
        parts.append(
            f'<text x="{centre}" y="{MARGIN_TOP + PLOT_HEIGHT / 2:.1f}" '
            'text-anchor="middle" fill="#666">No votes in this range yet.</text>'
        )
    return parts


def _lines(plot: _Plot, series: TimeSeries) -> list[str]:
    parts = ['<g class="series" fill="none" stroke-width="2">']
    for number, (option_id, label) in enumerate(series.options):
        colour, dash = _style(number)
        votes = series.votes.get(option_id, [])
        if not votes:
            continue
        points = " ".join(f"{plot.x(i):.1f},{plot.y(v):.1f}" for i, v in enumerate(votes))
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<polyline stroke="{colour}"{dash_attr} points="{points}">'
            f"<title>{_text(label)}</title></polyline>"
        )
        if plot.count <= MARKER_MAX_BUCKETS:
            parts.extend(
                f'<circle cx="{plot.x(i):.1f}" cy="{plot.y(v):.1f}" r="3" fill="{colour}" '
                'stroke="none"/>' for i, v in enumerate(votes)
            )
    parts.append("</g>")
    return parts


def _legend(series: TimeSeries, *, top: float) -> list[str]:
    parts = ['<g class="legend">']
    for number, (option_id, label) in enumerate(series.options):
        colour, dash = _style(number)
        row_y = top + number * LEGEND_ROW
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        total = sum(series.votes.get(option_id, []))
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + 24}" y1="{row_y}" y2="{row_y}" '
            f'stroke="{colour}" stroke-width="3"{dash_attr}/>'
            f'<text x="{MARGIN_LEFT + 32}" y="{row_y}" dominant-baseline="middle">'
            f"{_text(label, LEGEND_LABEL_MAX_CHARS)} ({total})</text>"
        )
    parts.append("</g>")
    return parts


def _style(number: int) -> tuple[str, str]:
    return PALETTE[number % len(PALETTE)], DASHES[(number // len(PALETTE)) % len(DASHES)]
