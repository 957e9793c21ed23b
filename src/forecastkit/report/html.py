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
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import nbformat
from nbformat import NotebookNode

__all__ = ["PLOTLY_MIME", "notebook_to_html", "external_scripts", "plotly_js"]

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
    """A copy of ``nb`` with plotly outputs rewritten as offline HTML; returns (copy, n_figures)."""
    nb = copy.deepcopy(nb)
    n = 0
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if _is_plotly_loader(output):
                continue
            data = output.get("data")
            if data is not None and PLOTLY_MIME in data:
                n += 1
                figure = data[PLOTLY_MIME]
                output["data"] = {"text/html": _figure_html(dict(figure), f"forecastkit-figure-{n}")}
            kept.append(output)
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
