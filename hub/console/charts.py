"""Charts as inline SVG, rendered on the server: no JavaScript, no chart library, no build step.

Why SVG strings: the console must work offline and without a build; SVG prints, scales,
and screen readers get a <title> and a data table next to every chart.
Every text passes through markupsafe.escape; numbers are formatted here.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

__all__ = ["bar_chart", "funnel_chart", "line_chart"]

PALETTE = {
    "requested": "#8c8c8c",
    "received": "#5b8fd6",
    "accepted": "#2f6db3",
    "declined": "#b35c2f",
    "in_progress": "#6a4fb3",
    "completed": "#2f8f4e",
    "cancelled": "#a0a0a0",
    "failed": "#c0392b",
    "urgent": "#c0392b",
    "high": "#e67e22",
    "normal": "#2f6db3",
}


def _fmt(n: float) -> str:
    return f"{n:g}" if n != int(n) else str(int(n))


def bar_chart(
    items: Sequence[tuple[str, str, float]], *, title: str, width: int = 460, bar_h: int = 22
) -> Markup:
    """Horizontal bars. items: (key for colour, label, value)."""
    label_w = 150
    height = max(1, len(items)) * (bar_h + 6) + 8
    top = max([v for _, _, v in items] + [1])
    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for i, (key, label, value) in enumerate(items):
        y = 4 + i * (bar_h + 6)
        w = (width - label_w - 50) * (value / top)
        colour = PALETTE.get(key, "#2f6db3")
        out.append(
            f'<text x="{label_w - 6}" y="{y + bar_h * 0.7:.1f}" text-anchor="end" '
            f'font-size="13" fill="#222">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}">'
            f"<title>{escape(label)}: {_fmt(value)}</title></rect>"
            f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h * 0.7:.1f}" font-size="13" '
            f'fill="#222" data-value="{_fmt(value)}">{_fmt(value)}</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every text above went through escape()


def funnel_chart(
    items: Sequence[tuple[str, str, float]], *, title: str, width: int = 460, step_h: int = 30
) -> Markup:
    """Centred bars narrowing from the first stage; each stage shows its share of the first."""
    height = max(1, len(items)) * (step_h + 4) + 4
    first = items[0][2] if items and items[0][2] else 1
    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for i, (_key, label, value) in enumerate(items):
        y = 2 + i * (step_h + 4)
        w = max(2.0, (width - 20) * (value / first))
        x = (width - w) / 2
        share = 100 * value / first
        shade = 200 - int(120 * i / max(1, len(items) - 1))
        out.append(
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{step_h}" '
            f'fill="rgb(23,{shade // 3 + 40},{shade // 2 + 40})"><title>{escape(label)}: '
            f"{_fmt(value)}</title></rect>"
            f'<text x="{width / 2:.1f}" y="{y + step_h * 0.68:.1f}" text-anchor="middle" '
            f'font-size="13" font-weight="600" fill="#fff">'
            f"{escape(label)}: {_fmt(value)} ({share:.0f}%)</text>"
        )
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every text above went through escape()


def line_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float]]],
    *,
    title: str,
    width: int = 620,
    height: int = 200,
) -> Markup:
    """Lines over time. series: (colour, name, values aligned with labels)."""
    left, bottom, top_pad, right = 34, 28, 10, 150
    plot_w = width - left - right
    plot_h = height - bottom - top_pad
    top = max([v for _, _, vals in series for v in vals] + [1])
    n = max(1, len(labels) - 1)
    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}" '
        f'stroke="#999"/><line x1="{left}" y1="{top_pad}" x2="{left}" y2="{top_pad + plot_h}" '
        f'stroke="#999"/>',
        f'<text x="{left - 4}" y="{top_pad + 10}" text-anchor="end" font-size="11">'
        f"{_fmt(top)}</text>",
        f'<text x="{left - 4}" y="{top_pad + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    for i, lab in enumerate(labels):
        if i % max(1, len(labels) // 6) == 0:
            x = left + plot_w * i / n
            out.append(
                f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" font-size="10">'
                f"{escape(lab[5:])}</text>"
            )
    for k, (colour, name, vals) in enumerate(series):
        pts = " ".join(
            f"{left + plot_w * i / n:.1f},{top_pad + plot_h - plot_h * v / top:.1f}"
            for i, v in enumerate(vals)
        )
        out.append(
            f'<polyline fill="none" stroke="{escape(colour)}" stroke-width="2" points="{pts}">'
            f"<title>{escape(name)}</title></polyline>"
        )
        ly = top_pad + 14 + k * 18
        out.append(
            f'<rect x="{left + plot_w + 10}" y="{ly - 9}" width="12" height="4" '
            f'fill="{escape(colour)}"/><text x="{left + plot_w + 26}" y="{ly - 4}" '
            f'font-size="11">{escape(name)}</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every text above went through escape()
