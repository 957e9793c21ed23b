"""Export an executed notebook to one self-contained, offline HTML file.

nbconvert's HTML templates load require.js and MathJax from a CDN, and plotly
figures in a notebook are stored as ``application/vnd.plotly.v1+json`` (which
nbconvert cannot draw) or as HTML that expects plotly.js from a CDN or from
require.js. A report must open on a laptop with no network, so this module:

1. rewrites every plotly output from its JSON into a plain ``<div>`` plus a
   ``Plotly.newPlot`` call (no require.js, stable ``div`` ids);
2. drops the outputs that only load plotly.js (the ``notebook`` renderer's
   activation script, which would embed the bundle a second time);
3. renders with a template derived from nbconvert's ``lab`` template whose
   require.js, MathJax, mermaid and widget blocks are emptied; and
4. embeds the plotly.js bundle once, in the page head, when a figure exists.

Safe reports
------------
Deal, account and rep names, notes and loss reasons come from the CRM and may
hold HTML or script (``<script>``, ``<img src=x onerror=...>``). A report is
forwarded to people who did not run it, so the export treats every output as
untrusted:

* ``text/html`` outputs (DataFrames, ``_repr_html_``, ``HTML(...)``, Stylers)
  pass through :func:`sanitize_html`, an allow-list that keeps tables and
  formatting and escapes every other tag (a ``<script>`` in a deal name is
  shown as the text ``<script>``), drops event-handler attributes,
  ``javascript:`` links and CSS ``url()``;
* ``text/markdown`` outputs are rendered to HTML, then sanitised the same way;
* ``image/svg+xml`` outputs become ``<img src="data:...">`` (an SVG shown as
  an image cannot run script); ``application/javascript`` outputs and widget
  views are dropped;
* plotly figures are the only script in a report: their JSON is embedded with
  ``<``, ``>`` and ``/`` escaped (no ``</script>`` break-out), plotly.js draws
  labels as SVG text (it never executes markup), and the data strings --
  categories, trace names, ``text``, ``hovertext``, ``customdata``, tick
  texts -- are HTML-escaped (:func:`escape_plotly_text`) so that plotly shows
  ``<b>`` literally instead of interpreting it.

Code that builds HTML or plotly titles/hover templates from CRM text should
still wrap the text in :func:`safe_text`, so that notebooks viewed in Jupyter
(where this export does not run) are safe too.
"""

from __future__ import annotations

import base64
import copy
import functools
import html as _html
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

__all__ = [
    "PLOTLY_MIME",
    "notebook_to_html",
    "external_scripts",
    "plotly_js",
    "safe_text",
    "sanitize_html",
    "escape_plotly_text",
]

#: The mimetype plotly uses for figures in notebooks.
PLOTLY_MIME = "application/vnd.plotly.v1+json"

_TEMPLATE_NAME = "forecastkit_offline.html.j2"
_TEMPLATE = """\
{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block extra_css %}
{%- if resources.forecastkit_plotly_js -%}
<script type="text/javascript">{{ resources.forecastkit_plotly_js }}</script>
{%- endif -%}
{% endblock extra_css %}
"""
_SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?([^\"' >]+)", re.IGNORECASE)
_LINK_HREF = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(https?:[^\"' >]+)", re.IGNORECASE)
_IMPORT_URL = re.compile(r"""\bimport\s*\(\s*["'](https?:[^"']+)""")


@functools.cache
def plotly_js() -> str:
    """The minified plotly.js bundle shipped with the installed ``plotly`` package."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


# ------------------------------------------------------------------ escaping
_ENTITY_AMP = re.compile(r"&(?!(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});)")


def safe_text(value: Any) -> str:
    """Text from the CRM made safe to put inside HTML or a plotly label.

    Use it whenever a deal, account, rep or contact name, a note or a loss
    reason is interpolated into HTML (``_repr_html_``, ``IPython.display.HTML``
    or ``Markdown``, Kanban cards) or into a plotly ``title`` /
    ``hovertemplate`` / annotation: ``safe_text('<b>Acme</b>')`` is
    ``'&lt;b&gt;Acme&lt;/b&gt;'``, which a browser and plotly both display as
    ``<b>Acme</b>``.

    Parameters
    ----------
    value : object
        Any value; missing values (None, NaN, NA, NaT) give ``""``.

    Returns
    -------
    str
        ``str(value)`` with ``&``, ``<``, ``>``, ``"`` and ``'`` replaced by
        HTML entities.
    """
    if value is None:
        return ""
    try:
        import pandas as pd

        if pd.isna(value) is True:
            return ""
    except (TypeError, ValueError):
        pass
    return _html.escape(str(value), quote=True)


def _escape_label(text: str) -> str:
    """Idempotent escape for plotly data strings: ``<``/``>`` always, ``&`` unless it starts an entity."""
    return _ENTITY_AMP.sub("&amp;", text).replace("<", "&lt;").replace(">", "&gt;")


# trace attributes that hold data strings plotly draws as (pseudo-)HTML text
_TRACE_TEXT_KEYS = (
    "x",
    "y",
    "z",
    "text",
    "hovertext",
    "customdata",
    "labels",
    "parents",
    "ids",
    "name",
    "theta",
    "r",
    "a",
    "b",
    "locations",
    "dimensions",
    "header",
    "cells",
    "values",
    "legendgrouptitle",
)
# layout axis attributes that must stay equal to the (escaped) data categories
_AXIS_TEXT_KEYS = ("categoryarray", "tickvals", "ticktext")


def _escape_strings(value: Any) -> Any:
    if isinstance(value, str):
        return _escape_label(value)
    if isinstance(value, list):
        return [_escape_strings(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_escape_strings(v) for v in value)
    if isinstance(value, dict):
        return {k: (_escape_strings(v) if k in ("values", "text", "label") else v) for k, v in value.items()}
    return value


def escape_plotly_text(figure: dict) -> dict:
    """A copy of a plotly figure (as JSON dict) whose data strings are HTML-escaped.

    plotly.js draws text with a small HTML subset (``<b>``, ``<br>``,
    ``<a href>``, ``<span style>``); it never executes script, but it would
    render a deal named ``<b>Big</b>`` in bold and drop unknown tags. Escaping
    the data strings (categories, trace names, ``text``, ``hovertext``,
    ``customdata``, labels, table cells, and the axes' ``categoryarray`` /
    ``tickvals`` / ``ticktext`` so categories still match) makes plotly show
    them literally. Titles, hover templates and annotations are left alone:
    they are written by the report's author (wrap CRM text interpolated into
    them with :func:`safe_text`). Escaping is idempotent: text already escaped
    with :func:`safe_text` is not escaped twice.

    Parameters
    ----------
    figure : dict
        ``fig.to_plotly_json()`` or the ``application/vnd.plotly.v1+json`` output.

    Returns
    -------
    dict
        A new figure dict; ``figure`` is not modified.
    """
    out = dict(figure)
    data = []
    for trace in figure.get("data", []) or []:
        trace = dict(trace)
        for key in _TRACE_TEXT_KEYS:
            if key in trace:
                trace[key] = _escape_strings(trace[key])
        data.append(trace)
    out["data"] = data
    layout = dict(figure.get("layout", {}) or {})
    for key, axis in list(layout.items()):
        if isinstance(axis, dict) and re.fullmatch(r"(x|y|z|radial|angular)axis\d*", key):
            axis = dict(axis)
            for k in _AXIS_TEXT_KEYS:
                if k in axis:
                    axis[k] = _escape_strings(axis[k])
            layout[key] = axis
    if layout:
        out["layout"] = layout
    return out


# -------------------------------------------------------------- sanitising
_ALLOWED_TAGS = frozenset(
    [
        "a",
        "abbr",
        "b",
        "blockquote",
        "br",
        "caption",
        "code",
        "col",
        "colgroup",
        "dd",
        "del",
        "details",
        "div",
        "dl",
        "dt",
        "em",
        "figcaption",
        "figure",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "ins",
        "kbd",
        "li",
        "mark",
        "ol",
        "p",
        "pre",
        "q",
        "s",
        "samp",
        "small",
        "span",
        "strong",
        "style",
        "sub",
        "summary",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "u",
        "ul",
    ]
)
_COMMON_ATTRS = frozenset(
    [
        "class",
        "id",
        "style",
        "title",
        "align",
        "valign",
        "halign",
        "colspan",
        "rowspan",
        "border",
        "width",
        "height",
        "scope",
        "lang",
        "dir",
        "role",
        "scoped",
    ]
)
_EXTRA_CSS = frozenset(
    [
        "background",
        "border",
        "border-top",
        "border-bottom",
        "border-left",
        "border-right",
        "border-width",
        "border-style",
        "border-radius",
        "border-spacing",
        "margin",
        "margin-top",
        "margin-bottom",
        "margin-left",
        "margin-right",
        "padding",
        "padding-top",
        "padding-bottom",
        "padding-left",
        "padding-right",
        "min-width",
        "max-width",
        "min-height",
        "max-height",
        "flex",
        "flex-direction",
        "flex-wrap",
        "flex-grow",
        "flex-shrink",
        "flex-basis",
        "align-items",
        "align-self",
        "justify-content",
        "gap",
        "opacity",
        "text-transform",
        "list-style",
        "box-shadow",
    ]
)
_BAD_CSS = re.compile(r"url\s*\(|expression\s*\(|@import|javascript:|behaviou?r\s*:", re.IGNORECASE)
_SAFE_HREF = re.compile(r"^(?:https?:|mailto:|#|[^:/?#]*(?:[/?#]|$))", re.IGNORECASE)
_SAFE_IMG = re.compile(r"^data:image/(?:png|jpe?g|gif|webp);base64,", re.IGNORECASE)


def _allow_attribute(tag: str, name: str, value: str) -> bool:
    if name.startswith("on"):
        return False
    if name in _COMMON_ATTRS:
        return True
    if tag == "a" and name == "href":
        return bool(_SAFE_HREF.match(value.strip()))
    if tag == "a" and name in ("target", "rel"):
        return True
    if tag == "img" and name == "src":
        return bool(_SAFE_IMG.match(value.strip()))
    return tag == "img" and name == "alt"


_PER_THREAD = threading.local()


def _cleaner():  # -> bleach.Cleaner
    """This thread's cleaner: bleach documents ``Cleaner`` as not thread-safe.

    Two reports exported at once from threads of one process (a scheduler, a
    notebook) sharing one cleaner corrupted each other's tables.
    """
    cleaner = getattr(_PER_THREAD, "cleaner", None)
    if cleaner is None:
        cleaner = _PER_THREAD.cleaner = _new_cleaner()
    return cleaner


def _new_cleaner():  # -> bleach.Cleaner
    import bleach
    from bleach.css_sanitizer import ALLOWED_CSS_PROPERTIES, CSSSanitizer

    class _CSS(CSSSanitizer):
        def sanitize_css(self, style: str) -> str:
            cleaned = super().sanitize_css(style)
            return "; ".join(d for d in cleaned.split(";") if d.strip() and not _BAD_CSS.search(d))

    css = _CSS(allowed_css_properties=frozenset(ALLOWED_CSS_PROPERTIES) | _EXTRA_CSS)
    return bleach.Cleaner(
        tags=_ALLOWED_TAGS,
        attributes=_allow_attribute,
        protocols=frozenset({"http", "https", "mailto", "data"}),
        strip=False,
        strip_comments=True,
        css_sanitizer=css,
    )


_STYLE_BLOCK = re.compile(r"(<style\b[^>]*>)(.*?)(</style\s*>)", re.IGNORECASE | re.DOTALL)


def sanitize_html(fragment: str) -> str:
    """Make an HTML fragment from a notebook output safe to publish.

    An allow-list: tables (everything ``DataFrame.to_html`` and pandas'
    Styler write), text formatting, lists, ``<details>``, links to
    ``http(s)``/``mailto`` and inline ``data:`` images are kept; any other tag
    (``<script>``, ``<iframe>``, ``<svg>``, ``<object>``, ``<form>``...) is
    escaped so it shows as text; ``on*`` event attributes, ``javascript:``
    URLs and CSS ``url()`` / ``expression()`` are removed. ``<style>`` blocks
    are kept (pandas uses them) but lose any ``url()``/``@import``.

    Parameters
    ----------
    fragment : str
        HTML from a ``text/html`` output.

    Returns
    -------
    str
        The sanitised HTML.
    """
    cleaned = _cleaner().clean(fragment)
    return _STYLE_BLOCK.sub(
        lambda m: m.group(1) + ("" if _BAD_CSS.search(m.group(2)) else m.group(2)) + m.group(3), cleaned
    )


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _markdown_html(text: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    return markdown2html_mistune(text)


def _svg_img(svg: str) -> str:
    encoded = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f'<img alt="figure" src="data:image/svg+xml;base64,{encoded}">'


_DROPPED_MIME = ("application/javascript", "text/javascript", "application/vnd.jupyter.widget-view+json")


def _sanitize_output(output: NotebookNode, render_plotly: Callable[[dict], str]) -> NotebookNode | None:
    """The output made safe to publish, or None when nothing safe is left to show."""
    data = output.get("data")
    if data is None:  # stream and error outputs: nbconvert escapes their text
        return output
    if PLOTLY_MIME in data:
        output["data"] = {"text/html": render_plotly(dict(data[PLOTLY_MIME]))}
        output["metadata"] = {}
        return output
    new = {k: v for k, v in data.items() if k not in _DROPPED_MIME}
    if "text/html" in new:
        new["text/html"] = sanitize_html(_text(new["text/html"]))
    elif "text/markdown" in new:
        new["text/html"] = sanitize_html(_markdown_html(_text(new["text/markdown"])))
    elif "image/svg+xml" in new:
        new["text/html"] = _svg_img(_text(new["image/svg+xml"]))
    new.pop("text/markdown", None)
    new.pop("image/svg+xml", None)
    if not new:
        return None
    output["data"] = new
    return output


def _is_plotly_loader(output: NotebookNode) -> bool:
    """True for an output that only loads plotly.js (no figure in it)."""
    data = output.get("data", {})
    if PLOTLY_MIME in data:
        return False
    html = data.get("text/html", "")
    if isinstance(html, list):
        html = "".join(html)
    return "PlotlyConfig" in html and "Plotly.newPlot" not in html


def _figure_html(figure: dict, div_id: str) -> str:
    import plotly.io as pio

    return pio.to_html(
        figure,
        include_plotlyjs=False,
        full_html=False,
        div_id=div_id,
        validate=False,
        config={"responsive": True, "displaylogo": False},
    )


def _prepare(nb: NotebookNode) -> tuple[NotebookNode, int]:
    """A copy of ``nb`` with plotly outputs rewritten as offline HTML and every other output
    sanitised (see the module docstring); returns (copy, n_figures)."""
    nb = copy.deepcopy(nb)
    n = 0

    def render(figure: dict) -> str:
        nonlocal n
        n += 1
        return _figure_html(escape_plotly_text(figure), f"forecastkit-figure-{n}")

    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if _is_plotly_loader(output):
                continue
            safe = _sanitize_output(output, render)
            if safe is not None:
                kept.append(safe)
        cell["outputs"] = kept
    return nb, n


def notebook_to_html(
    nb: NotebookNode | str | Path,
    *,
    include_code: bool = False,
    title: str | None = None,
) -> str:
    """Render an executed notebook as a self-contained HTML page that needs no network.

    Parameters
    ----------
    nb : NotebookNode or path
        The executed notebook, or the path of an ``.ipynb`` file.
    include_code : bool, default False
        Show the code cells. By default only markdown and outputs are shown,
        which is what a sales manager wants to read.
    title : str, optional
        The page title (defaults to the notebook's ``metadata.title`` or its name).

    Returns
    -------
    str
        The HTML page. plotly.js is embedded once (only when the notebook has a
        figure); no ``<script src=...>`` points outside the file.
    """
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    if not isinstance(nb, NotebookNode):
        nb = nbformat.read(str(nb), as_version=4)
    prepared, n_figures = _prepare(nb)
    if title is not None:
        prepared.metadata["title"] = title
    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({_TEMPLATE_NAME: _TEMPLATE})],
        template_file=_TEMPLATE_NAME,
        exclude_input=not include_code,
        exclude_input_prompt=not include_code,
        exclude_output_prompt=not include_code,
    )
    resources = {"forecastkit_plotly_js": plotly_js() if n_figures else ""}
    body, _ = exporter.from_notebook_node(prepared, resources=resources)
    return body


def external_scripts(html: str) -> list[str]:
    """Scripts, modules and stylesheets that an HTML page would fetch over the network.

    Parameters
    ----------
    html : str
        An HTML page.

    Returns
    -------
    list of str
        The ``http(s)`` / protocol-relative URLs of ``<script src>``, ``<link href>``
        and dynamic ``import("...")`` calls. Empty for an offline page.
    """
    urls = [u for u in _SCRIPT_SRC.findall(html) if u.startswith(("http:", "https:", "//"))]
    urls += _LINK_HREF.findall(html)
    urls += _IMPORT_URL.findall(html)
    return urls
