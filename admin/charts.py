"""Charts as inline SVG rendered on the server (pygal): no JavaScript, nothing fetched from the internet. pygal is
imported by the first chart, not by a server's start."""
from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

if TYPE_CHECKING:
    import pygal


@cache
def _style() -> Any:
    from pygal.style import Style  # noqa: PLC0415

    return Style(font_family='"Noto Sans CJK SC","WenQuanYi Micro Hei","Microsoft YaHei",sans-serif',
                 background="white", plot_background="white", label_font_size=12, major_label_font_size=12,
                 legend_font_size=12, title_font_size=14, value_font_size=11,
                 colors=("#1f4e79", "#f0a500", "#17663a", "#b00020", "#6b7280", "#7a5a00", "#4b8bbe", "#9c27b0"))


def _svg(chart: pygal.graph.graph.Graph, categories: list[str], series: dict[str, list[float | None]]) -> Markup:
    chart.x_labels = categories
    for name, values in series.items():
        chart.add(name, values)
    # js=[] keeps pygal from linking its tooltip script from a CDN; <title> elements still give tooltips
    return Markup(chart.render(disable_xml_declaration=True, is_unicode=True))


def bar_chart(title: str, categories: list[str], series: dict[str, list[float | None]], stacked: bool = False,
              height: int = 320) -> Markup:
    import pygal  # noqa: PLC0415

    kind = pygal.StackedBar if stacked else pygal.Bar
    return _svg(kind(title=title, style=_style(), js=[], height=height, width=900, legend_at_bottom=True,
                     x_label_rotation=30 if len(categories) > 8 else 0, print_values=False),
                categories, series)


def line_chart(title: str, categories: list[str], series: dict[str, list[float | None]], height: int = 320) -> Markup:
    import pygal  # noqa: PLC0415

    return _svg(pygal.Line(title=title, style=_style(), js=[], height=height, width=900, legend_at_bottom=True,
                           x_label_rotation=30 if len(categories) > 8 else 0, show_dots=len(categories) < 60),
                categories, series)
