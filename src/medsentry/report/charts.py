"""Small SVG charts made in code (no plotting library): horizontal bars and a stacked bar.

The SVG is inline in the HTML and rendered by the PDF engine as vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

SEVERITY_COLORS = {
    "critical": "#7b1fa2",
    "high": "#c62828",
    "medium": "#ef6c00",
    "low": "#f9a825",
    "info": "#90a4ae",
}
PALETTE = ("#1565c0", "#2e7d32", "#6a1b9a", "#00838f", "#ad1457", "#4e342e", "#455a64", "#f57f17")


def hbar(
    items: Sequence[tuple[str, float]],
    title: str,
    colors: dict[str, str] | None = None,
    width: int = 520,
    max_items: int = 12,
    unit: str = "",
) -> str:
    """Horizontal bars, largest first as given; the rest summed into "other"."""
    items = list(items)
    if len(items) > max_items:
        rest = sum(v for _, v in items[max_items - 1 :])
        items = [*items[: max_items - 1], ("other", rest)]
    bar_h, gap, label_w, top = 18, 6, 170, 24
    height = top + len(items) * (bar_h + gap) + 6
    peak = max((v for _, v in items), default=0) or 1
    span = width - label_w - 60
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="15" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    if not items:
        out.append('<text x="0" y="40" font-size="11">none</text>')
    for i, (label, value) in enumerate(items):
        y = top + i * (bar_h + gap)
        w = max(1.0, span * value / peak) if value else 0
        color = (colors or {}).get(label, PALETTE[i % len(PALETTE)])
        out.append(
            f'<text x="{label_w - 6}" y="{y + 13}" font-size="11" text-anchor="end">'
            f"{escape(str(label)[:28])}</text>"
        )
        out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
        shown = f"{value:,.0f}{unit}" if float(value).is_integer() else f"{value:,.1f}{unit}"
        out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 13}" font-size="11">{shown}</text>')
    out.append("</svg>")
    return "".join(out)


def stacked(
    parts: Sequence[tuple[str, float]], title: str, colors: dict[str, str], width: int = 520
) -> str:
    """One bar split into parts (e.g. open findings by severity), with a legend."""
    total = sum(v for _, v in parts) or 1
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="70" '
        f'viewBox="0 0 {width} 70" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="15" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    x = 0.0
    for label, value in parts:
        w = width * value / total
        if w > 0:
            out.append(
                f'<rect x="{x:.1f}" y="22" width="{w:.1f}" height="20" '
                f'fill="{colors.get(label, "#607d8b")}"/>'
            )
        x += w
    lx = 0
    for label, value in parts:
        c = colors.get(label, "#607d8b")
        out.append(f'<rect x="{lx}" y="52" width="10" height="10" fill="{c}"/>')
        out.append(f'<text x="{lx + 14}" y="61" font-size="11">{escape(label)} {value:,.0f}</text>')
        lx += 14 + 7 * (len(label) + len(f"{value:,.0f}") + 2)
    out.append("</svg>")
    return "".join(out)
