"""Charts as inline SVG rendered on the server (pygal): no JavaScript, nothing fetched from the internet. pygal is
imported by the first chart, not by a server's start."""
from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from markupsafe import Markup


@cache
def _style() -> Any:
    from pygal.style import Style  # noqa: PLC0415

    return Style(font_family='"Noto Sans CJK SC","WenQuanYi Micro Hei","Microsoft YaHei",sans-serif',
                 background="white", plot_background="white", label_font_size=12, major_label_font_size=12,
                 legend_font_size=12, title_font_size=14, value_font_size=11,
                 colors=("#1f4e79", "#f0a500", "#17663a", "#b00020", "#6b7280", "#7a5a00", "#4b8bbe", "#9c27b0"))


def bar_chart(title: str, categories: list[str], series: dict[str, list[float | None]], stacked: bool = False,
              height: int = 320) -> Markup:
    return _svg("StackedBar" if stacked else "Bar", title, tuple(categories), _frozen(series), height)


def line_chart(title: str, categories: list[str], series: dict[str, list[float | None]], height: int = 320) -> Markup:
    return _svg("Line", title, tuple(categories), _frozen(series), height)


def _frozen(series: dict[str, list[float | None]]) -> tuple[tuple[str, tuple[float | None, ...]], ...]:
    return tuple((name, tuple(values)) for name, values in series.items())


@lru_cache(maxsize=64)
def _svg(kind: str, title: str, categories: tuple[str, ...], series: tuple[tuple[str, tuple[float | None, ...]], ...],
         height: int) -> Markup:
    """A chart's SVG, kept for the same figures: pygal takes tens of milliseconds to draw one, and a dashboard
    reloaded between patrols shows the same ones."""
    import pygal  # noqa: PLC0415

    options: dict[str, Any] = {"show_dots": len(categories) < 60} if kind == "Line" else {"print_values": False}
    chart = getattr(pygal, kind)(title=title, style=_style(), js=[], height=height, width=900, legend_at_bottom=True,
                                 x_label_rotation=30 if len(categories) > 8 else 0, **options)
    chart.x_labels = list(categories)
    for name, values in series:
        chart.add(name, list(values))
    # js=[] keeps pygal from linking its tooltip script from a CDN; <title> elements still give tooltips
    return Markup(chart.render(disable_xml_declaration=True, is_unicode=True))
