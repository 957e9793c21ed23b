"""Safe reports: CRM text never runs as script in a published page, and personal data can be masked.

Three layers:

1. unit tests of the escaping and sanitising helpers and of the masking (no kernel, no browser);
2. browser tests (``browser`` marker): pages are opened in headless Chromium, a
   harness hovers over every point of every plotly figure, and the dumped DOM
   must not carry the marker that any injected script would set. A positive
   control proves that the detector sees a script that does run;
3. an end-to-end test: a sample company whose rep, deal and account names,
   loss reasons, next steps, visit notes and contact names are script
   payloads, run through the overview report (papermill) and opened in Chromium.

Chromium comes from Debian's ``chromium`` package (``scripts/browser-packages.sh``).
Without it the browser tests skip with a message on a developer's machine, and
fail under CI (``CI`` set): CI must run them.
"""

from __future__ import annotations

import html as _html
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import pytest

import forecastkit as fk
from forecastkit.cli import main
from forecastkit.data.crm import CRM
from forecastkit.errors import ParameterError
from forecastkit.report import run_report
from forecastkit.report.html import escape_plotly_text, external_scripts, notebook_to_html, safe_text, sanitize_html
from forecastkit.report.privacy import mask_export, mask_personal_data, mask_tables

ROOT = Path(__file__).resolve().parents[1]
MARK = "document.documentElement.setAttribute('data-xss','{}')"


def payload(tag: str) -> str:
    """Markup that sets ``data-xss=<tag>-...`` on <html> if any part of it runs."""
    return (
        f"</script><script>{MARK.format(tag + '-script')}</script>"
        f'<img src=x onerror="{MARK.format(tag + "-img")}">'
        f'<svg onload="{MARK.format(tag + "-svg")}"></svg>'
        f'<a href="javascript:{MARK.format(tag + "-href")}">link</a>'
        f'<iframe srcdoc="<script>parent.{MARK.format(tag + "-iframe")}</script>"></iframe>'
        f"<b>{tag}</b>"
    )


# ============================================================ 1. helpers
def test_safe_text_escapes_markup_and_blanks_missing_values() -> None:
    assert safe_text("<b>Acme & Co</b>") == "&lt;b&gt;Acme &amp; Co&lt;/b&gt;"
    assert safe_text('say "hi"') == "say &quot;hi&quot;"
    assert safe_text(None) == "" and safe_text(float("nan")) == "" and safe_text(pd.NA) == ""
    assert safe_text(12.5) == "12.5"


def test_sanitize_html_keeps_tables_and_escapes_script() -> None:
    df = pd.DataFrame({"deal": [payload("df")], "amount": [100.0]})
    raw = df.to_html(escape=False) + df.style.to_html()
    clean = sanitize_html(raw)
    assert "<table" in clean and "<td>" in clean and "<th" in clean  # the tables survive
    assert "<style" in clean  # pandas' Styler CSS survives
    assert "<script" not in clean and "<iframe" not in clean and "<svg" not in clean
    assert "&lt;script&gt;" in clean  # shown as text
    assert not re.search(r"<[^>]+\bon\w+\s*=", clean)  # no event handler left on a real tag
    assert not re.search(r'<a\b[^>]*href="javascript', clean)


def test_sanitize_html_is_safe_from_several_threads_at_once() -> None:
    # bleach's Cleaner is not thread-safe; a shared one corrupted concurrent exports
    from concurrent.futures import ThreadPoolExecutor

    tables = [pd.DataFrame({"deal": [f"d{k}-{i}" for i in range(300)], "amount": range(300)}).to_html() for k in range(8)]
    expected = [sanitize_html(t) for t in tables]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            assert list(pool.map(sanitize_html, tables)) == expected


def test_sanitize_html_drops_dangerous_attributes_and_css() -> None:
    got = sanitize_html(
        '<a href="javascript:alert(1)" title="t">x</a><a href="https://example.test/a">ok</a>'
        '<div style="color: red; background: url(https://evil.test/x.png); margin: 2px" onclick="alert(1)">d</div>'
        '<img src="https://evil.test/pixel.gif"><img src="data:image/png;base64,iVBORw0KGgo=">'
        "<style>.x { background: url(https://evil.test/) }</style><style>.ok { color: red }</style>"
    )
    assert 'href="javascript' not in got and 'href="https://example.test/a"' in got
    assert "onclick" not in got and "url(" not in got
    assert "color: red" in got and "margin: 2px" in got
    assert "evil.test/pixel" not in got and 'src="data:image/png;base64,' in got
    assert ".ok { color: red }" in got


def test_escape_plotly_text_escapes_data_strings_only_and_is_idempotent() -> None:
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=["<b>A</b>", "R&D"], y=[1, 2], name="<i>t</i>", text=["&lt;ok&gt;", "<s>"]))
    fig.update_layout(title="<b>Bold title</b>", xaxis={"categoryarray": ["<b>A</b>", "R&D"]})
    before = fig.to_plotly_json()
    got = escape_plotly_text(before)
    assert list(got["data"][0]["x"]) == ["&lt;b&gt;A&lt;/b&gt;", "R&amp;D"]
    assert got["data"][0]["name"] == "&lt;i&gt;t&lt;/i&gt;"
    assert list(got["data"][0]["text"]) == ["&lt;ok&gt;", "&lt;s&gt;"]  # already escaped: unchanged
    assert list(got["layout"]["xaxis"]["categoryarray"]) == list(got["data"][0]["x"])  # categories still match
    assert got["layout"]["title"]["text"] == "<b>Bold title</b>"  # authored markup kept
    assert escape_plotly_text(got)["data"][0]["x"] == got["data"][0]["x"]  # idempotent
    assert list(before["data"][0]["x"]) == ["<b>A</b>", "R&D"]  # input untouched


def _all_outputs_notebook(tag: str = "nb") -> nbformat.NotebookNode:
    """A notebook whose outputs carry payloads in every kind of output a report can have."""
    import plotly.graph_objects as go

    p = payload
    df = pd.DataFrame({"deal": [p(f"{tag}-df")], "n": [1]})
    fig = go.Figure(
        go.Bar(
            x=[p(f"{tag}-x"), "b"],
            y=[1, 2],
            name=p(f"{tag}-name"),
            text=[p(f"{tag}-text"), "t"],
            hovertext=[p(f"{tag}-hover"), "h"],
            customdata=[p(f"{tag}-cd"), "c"],
            hovertemplate="%{customdata}<br>%{x}<br>%{hovertext}<extra>%{fullData.name}</extra>",
        )
    )
    fig.add_trace(go.Scatter(x=[1, 2], y=[3, 4], name=p(f"{tag}-name2"), text=[p(f"{tag}-t2"), "u"], hoverinfo="all"))
    fig.update_layout(
        title=safe_text(p(f"{tag}-title")),
        xaxis_title=p(f"{tag}-xtitle"),
        annotations=[{"text": p(f"{tag}-ann"), "x": 0, "y": 0}],
        legend_title_text=p(f"{tag}-legend"),
        showlegend=True,
    )
    o = nbformat.v4.new_output
    outs = [
        o("display_data", data={"text/html": df.to_html(escape=False), "text/plain": "df"}),
        o("display_data", data={"text/html": df.style.to_html(), "text/plain": "styler"}),
        o("display_data", data={"text/markdown": "**deal** " + p(f"{tag}-md"), "text/plain": "md"}),
        o(
            "display_data",
            data={
                "image/svg+xml": f'<svg xmlns="http://www.w3.org/2000/svg"><script>{MARK.format(tag + "-svgimg")}</script></svg>'
            },
        ),
        o("display_data", data={"application/javascript": MARK.format(tag + "-js")}),
        o("display_data", data={"text/latex": p(f"{tag}-latex")}),
        o("stream", name="stdout", text=p(f"{tag}-stream")),
        o("error", ename="ValueError", evalue=p(f"{tag}-err"), traceback=[p(f"{tag}-tb")]),
        o("execute_result", data={"text/plain": p(f"{tag}-plain")}, execution_count=1),
        o("display_data", data={"application/vnd.plotly.v1+json": fig.to_plotly_json(), "text/plain": "Figure"}),
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Injected"), nbformat.v4.new_code_cell("x", outputs=outs)]
    return nb


def test_export_sanitises_every_output_kind() -> None:
    page = notebook_to_html(_all_outputs_notebook(), title=payload("title"))
    body = page[page.index("<body") :]
    # the only <script> elements left in the body are plotly's newPlot calls
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", body, flags=re.S)
    assert scripts and all("Plotly.newPlot" in s for s in scripts)
    assert "nb-js" not in body  # application/javascript output dropped
    assert 'src="data:image/svg+xml;base64,' in body  # SVG shown as an image, not inline
    assert not re.search(r"<(img|svg|a|div|iframe)\b[^>]*\bon\w+\s*=", body)
    assert "<iframe" not in body
    assert not re.search(r'<a\b[^>]*href="javascript', body)
    assert "&lt;script&gt;" in body  # payloads are visible as text
    assert external_scripts(page) == []
    assert "<title>&lt;/script&gt;" in page


# ============================================================ masking
def test_mask_personal_data_replaces_people_consistently(crm: CRM) -> None:
    before = {n: df.copy() for n, df in crm.tables.items()}
    masked = mask_personal_data(crm)
    c = masked.contacts
    assert c["name"].tolist() == ["Person 02", "Person 03"]  # Jane CFO, Jane Doe, John Roe sorted
    assert c["email"].tolist() == ["email-01@masked.invalid", "email-02@masked.invalid"]
    o = masked.opportunities.set_index("opportunity_id")
    assert o.loc["O1", "decision_maker"] == "Person 01" and o.loc["O2", "decision_maker"] == "Person 01"
    assert pd.isna(o.loc["O3", "decision_maker"])  # missing stays missing
    # numbers, dates, ids and stages unchanged; input not modified
    pd.testing.assert_frame_equal(
        masked.opportunities.drop(columns=["decision_maker", "champion"]),
        crm.opportunities.drop(columns=["decision_maker", "champion"]),
    )
    for n, df in crm.tables.items():
        pd.testing.assert_frame_equal(df, before[n])
    assert masked.as_of_date == crm.as_of_date and masked.load_report is crm.load_report
    assert str(masked.contacts["name"].dtype) == str(crm.contacts["name"].dtype)


def test_mask_names_masks_reps_deals_and_accounts_everywhere(crm: CRM) -> None:
    masked = mask_personal_data(crm, names=True)
    text = "\n".join(df.astype(str).to_csv() for df in masked.tables.values())
    for secret in ("alice", "bob", "carol", "Acme", "Globex", "Jane", "John", "acme.test"):
        assert secret not in text, secret
    o = masked.opportunities.set_index("opportunity_id")
    assert o.loc["O1", "owner"] == "Rep 01" and o.loc["O2", "owner"] == "Rep 02"  # alice, bob, carol sorted
    assert o.loc["O1", "name"] == "Deal O1"
    assert masked.reps["manager"].tolist() == ["Rep 03", "Rep 03"]
    assert masked.accounts["name"].tolist() == ["Account A1", "Account A2"]
    assert set(masked.activities["owner"]) <= {"Rep 01", "Rep 02"}
    # every number is unchanged
    pd.testing.assert_series_equal(masked.opportunities["amount"], crm.opportunities["amount"])
    rewound = masked.as_of("2026-04-01")  # rewinding brings no name back
    assert "alice" not in rewound.opportunities.to_csv()


def test_mask_tables_masks_field_history_values_of_people_fields() -> None:
    tables = {
        "opportunities": pd.DataFrame({"opportunity_id": ["o1"], "champion": ["Ann Lee"], "owner": ["ana"]}),
        "field_history": pd.DataFrame(
            {
                "opportunity_id": ["o1", "o1", "o1"],
                "field": ["champion", "next_step", "owner"],
                "old_value": [None, "call Ann Lee", "bob"],
                "new_value": ["Ann Lee", "demo", "ana"],
            }
        ),
    }
    got = mask_tables(tables, names=True)
    fh = got["field_history"]
    assert fh["new_value"].tolist() == ["Person 01", "demo", "Rep 01"]
    assert fh["old_value"].tolist()[2] == "Rep 02"
    assert got["opportunities"]["champion"].tolist() == ["Person 01"]


def test_mask_export_keeps_row_accounting_and_removes_names(csv_folder: Path, tmp_path: Path) -> None:
    with (csv_folder / "opportunities.csv").open("a") as f:  # a row that is rejected (bad date)
        f.write("O9,A1,Bad deal,alice,north,soon,2026-06-01,1,EUR,proposal,open,,,,,,,,Jane CFO\n")
    target = mask_export(csv_folder, tmp_path / "masked", names=True)
    original, masked = fk.load(csv_folder), fk.load(target)
    pd.testing.assert_frame_equal(original.load_report.summary, masked.load_report.summary)
    assert masked.load_report.errors == original.load_report.errors == 1
    everything = "".join(p.read_text() for p in target.iterdir())
    for secret in ("alice", "Jane", "jane@acme.test", "Acme renewal"):
        assert secret not in everything
    with pytest.raises(ParameterError, match="not empty"):
        mask_export(csv_folder, target)
    with pytest.raises(ParameterError, match="only be masked in an export folder"):
        mask_export("duckdb:///x.db", tmp_path / "m2")


def test_masking_a_database_url_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["report", "overview", "--data", "duckdb:///crm.db", "--mask-personal-data", "--out", str(tmp_path)])
    assert code == 2
    assert "cannot mask personal data in 'duckdb:///crm.db'" in capsys.readouterr().err


# ============================================================ 2. browser
HARNESS = """<script>
window.addEventListener('load', function () {
  var k = 0;
  document.querySelectorAll('.plotly-graph-div').forEach(function (d) {
    (d.data || []).forEach(function (t, c) {
      var n = Math.max((t.x || []).length, (t.y || []).length, (t.labels || []).length);
      for (var p = 0; p < n; p++) {
        (function (c, p) { setTimeout(function () {
          try { Plotly.Fx.hover(d, [{curveNumber: c, pointNumber: p}]); } catch (e) {}
          document.body.setAttribute('data-hovered', String(Number(document.body.getAttribute('data-hovered') || 0) + 1));
        }, 20 * (k++)); })(c, p);
      }
    });
  });
  setTimeout(function () { document.body.setAttribute('data-harness', 'done'); }, 20 * (k + 5));
});
</script>"""


def _chromium() -> str:
    for candidate in (os.environ.get("FORECASTKIT_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    message = (
        "headless Chromium not found: the safe-report browser test needs it. "
        "Install it with `bash scripts/browser-packages.sh` (Debian's chromium package) "
        "or set FORECASTKIT_CHROMIUM to a Chromium/Chrome binary."
    )
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: the browser test must run in CI)")
    pytest.skip(message)


def open_in_chromium(page: Path, tmp_path: Path) -> str:
    """Open ``page`` (plus the hover harness) in headless Chromium; return the DOM after scripts ran."""
    browser = _chromium()
    harnessed = page.with_name(page.stem + ".harness.html")
    text = page.read_text(encoding="utf-8")
    harnessed.write_text(text.replace("</body>", HARNESS + "</body>", 1), encoding="utf-8")
    profile = tmp_path / f"chromium-profile-{page.stem}"
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=30000",
            "--dump-dom",
            harnessed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'data-harness="done"' in dom, "the page did not finish loading in Chromium: " + proc.stderr[-1000:]
    return dom


def _ran(dom: str) -> list[str]:
    return re.findall(
        r'data-xss="([^"]*)"', dom[: dom.find("<head")] + dom[dom.find("<body") : dom.find("<body") + 400]
    )


@pytest.mark.browser
def test_browser_detects_a_script_that_runs(tmp_path: Path) -> None:
    """Positive control: unsanitised payloads do run, and the detector sees them."""
    page = tmp_path / "control.html"
    page.write_text(f"<!DOCTYPE html><html><head></head><body>{payload('control')}</body></html>")
    assert _ran(open_in_chromium(page, tmp_path))


@pytest.mark.browser
def test_browser_runs_no_injected_script_from_any_output_kind(tmp_path: Path) -> None:
    page = tmp_path / "all_outputs.html"
    page.write_text(notebook_to_html(_all_outputs_notebook(), title=payload("title")), encoding="utf-8")
    dom = open_in_chromium(page, tmp_path)
    assert _ran(dom) == []
    assert int(re.search(r'data-hovered="(\d+)"', dom).group(1)) >= 4  # every point was hovered
    assert 'class="hovertext"' in dom  # hover labels were drawn
    assert "&lt;script&gt;" in dom  # injected markup shown as text


# ============================================================ 3. end to end
SAMPLE_KW = {"seed": 0, "n_reps": 6, "start": "2025-07-01"}


def injected_sample(folder: Path) -> Path:
    """A small sample company whose CRM text fields are script payloads; returns the export folder."""
    from forecastkit.data.sample import generate

    s = generate(scenario="baseline", **SAMPLE_KW)
    t = s.tables
    rep = t["reps"]["owner"].iloc[0]
    evil_rep = "Rep " + payload("rep")
    for df in t.values():
        for col in ("owner", "manager"):
            if col in df.columns:
                df[col] = df[col].mask(df[col] == rep, evil_rep)
    o = t["opportunities"]
    o["name"] = o["opportunity_id"] + " " + payload("deal")
    o["loss_reason"] = o["loss_reason"].where(o["loss_reason"].isna(), payload("loss"))
    o["next_step"] = payload("next")
    o["competitor"] = payload("competitor")
    o["decision_maker"] = "Dana Secret"
    t["accounts"]["name"] = payload("account")
    t["contacts"]["name"] = "Carl Secret " + payload("contact")
    t["contacts"]["email"] = "carl.secret@customer.test"
    t["activities"]["report"] = payload("note")
    s.save(folder)
    return folder


@pytest.fixture(scope="module")
def injected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return injected_sample(tmp_path_factory.mktemp("injected") / "export")


@pytest.mark.browser
@pytest.mark.slow
def test_report_on_injected_crm_runs_no_script_in_chromium(injected: Path, tmp_path: Path) -> None:
    _chromium()  # skip (or fail under CI) before spending a kernel run
    result = run_report("overview", data=injected, out=tmp_path / "reports", progress=False, timeout=600)
    page = result.html_path
    text = page.read_text(encoding="utf-8")
    assert _html.escape("<script>", quote=False) in text or "\\u003cscript\\u003e" in text  # the rep's name is there
    dom = open_in_chromium(page, tmp_path)
    assert _ran(dom) == []
    assert "&lt;script&gt;" in dom  # the rep's name shown as text in the tables


@pytest.mark.slow
def test_masked_report_hides_names(injected: Path, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("data = 'data/sample'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import forecastkit as fk\ncrm = fk.load(data)\n"
            "display(crm.contacts.head(20))\ndisplay(crm.opportunities.head(20))\nprint(len(crm.opportunities))"
        ),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "people.ipynb"
    nbformat.write(nb, str(path))
    out = tmp_path / "reports"
    plain = run_report(path, data=injected, out=out / "plain", progress=False)
    masked = run_report(path, data=injected, out=out / "masked", progress=False, mask_names=True)
    plain_text, masked_text = plain.html_path.read_text(), masked.html_path.read_text()
    assert "Carl Secret" in plain_text and "Dana Secret" in plain_text
    for secret in ("Carl Secret", "carl.secret@customer.test", "Dana Secret", "Rep &lt;/script&gt;", "deal&lt;/b&gt;"):
        assert secret not in masked_text, secret
    assert re.search(r"Person \d+", masked_text) and "email-" in masked_text
    count = re.compile(r"<pre>(\d+)\s*</pre>")
    assert count.findall(plain_text) == count.findall(masked_text)  # same rows
    assert masked.parameters["data"] == str(injected.resolve())  # the temp copy is not reported...
    assert not [p for p in (out / "masked").iterdir() if p.name.startswith(".")]  # ...and is removed
