"""Tests of the report runner, the offline HTML export and the overview helpers.

Runner tests use tiny throwaway notebooks written to ``tmp_path`` (passed to
``run_report`` by path), so they do not depend on the sample data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from forecastkit.errors import ParameterError, ReportError
from forecastkit.report import (
    REPORTS,
    external_scripts,
    list_reports,
    notebook_path,
    notebook_to_html,
    run_report,
    validate_parameters,
)
from forecastkit.report import overview as ov
from forecastkit.report.html import plotly_js

ROOT = Path(__file__).resolve().parents[1]
PARAMS = "n = 1\nlabel = 'x'\nfail = False\ncode = '01234'\nratio = 0.5\nas_of = ''\ndata = 'data/sample'"


def _write_nb(path: Path, cells: list[str], params: str = PARAMS) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Tiny report"),
        nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
        *(nbformat.v4.new_code_cell(c) for c in cells),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return _write_nb(
        tmp_path / "tiny.ipynb",
        [
            "if fail:\n    raise ValueError('boom ' + label)",
            "import plotly.graph_objects as go\ngo.Figure(go.Bar(x=['alpha-trace'], y=[n]))",
            "go.Figure(go.Scatter(x=[1, 2], y=[3, 4], name='beta-trace'))",
            "print('secret-code-marker', n, code)",
        ],
    )


# --------------------------------------------------------------- parameters
def test_unknown_parameter_is_rejected_with_the_allowed_names(tiny: Path) -> None:
    with pytest.raises(
        ParameterError, match=r"report 'tiny' has no parameter 'bogus'; allowed parameters: n, label, fail"
    ):
        validate_parameters(tiny, {"bogus": 1})


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [("n", "x", "int"), ("n", 2.5, "int"), ("ratio", "half", "float"), ("fail", "maybe", "bool"), ("label", 3, "str")],
)
def test_wrong_type_names_parameter_type_and_value(tiny: Path, name: str, value: object, expected: str) -> None:
    with pytest.raises(ParameterError, match=rf"parameter '{name}' expects {expected} \(default .*\), got {value!r}"):
        validate_parameters(tiny, {name: value})


def test_strings_from_the_command_line_are_coerced_to_the_default_type(tiny: Path) -> None:
    got = validate_parameters(tiny, {"n": "3", "code": "01234", "ratio": "2", "fail": "yes", "label": "2026-Q4"})
    assert got == {"n": 3, "code": "01234", "ratio": 2.0, "fail": True, "label": "2026-Q4"}
    assert validate_parameters(tiny, {"as_of": pd.Timestamp("2026-06-30")}) == {"as_of": "2026-06-30"}


def test_parameters_are_checked_before_any_kernel_starts(tiny: Path, tmp_path: Path) -> None:
    # a missing kernel would fail later: the parameter error must come first
    with pytest.raises(ParameterError, match="no parameter 'bogus'"):
        run_report(tiny, params={"bogus": 1}, kernel="no-such-kernel", out=tmp_path / "out", data=tmp_path)
    with pytest.raises(ParameterError, match="as_of 'soon' is not a date"):
        run_report(tiny, as_of="soon", kernel="no-such-kernel", out=tmp_path / "out", data=tmp_path)
    with pytest.raises(ParameterError, match=r"data folder '.*nowhere' does not exist.*forecastkit sample"):
        run_report(tiny, data=tmp_path / "nowhere", kernel="no-such-kernel", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_kernel_is_a_clear_report_error(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ReportError, match=r"kernel 'no-such-kernel' is not installed; install it with: .*ipykernel install"
    ):
        run_report(tiny, kernel="no-such-kernel", out=tmp_path / "out", data=tmp_path)


def test_unknown_report_name_lists_known_reports() -> None:
    with pytest.raises(ParameterError, match=r"unknown report 'nope'; known reports: .*overview"):
        notebook_path("nope")
    with pytest.raises(ParameterError, match="unknown report 'nope'"):
        run_report("nope")


# ------------------------------------------------------------------ registry
def test_registry_and_discovery() -> None:
    assert REPORTS["overview"] == "overview.ipynb"
    reports = list_reports()
    assert list(reports.columns) == ["name", "title", "registered", "path"]
    assert reports["name"].iloc[0] == "overview"
    row = reports.set_index("name").loc["overview"]
    assert row["registered"]
    assert row["title"] == "Pipeline overview"
    assert "explore" in set(reports["name"]) and not reports.set_index("name").loc["explore", "registered"]
    assert notebook_path("overview").name == "overview.ipynb"


@pytest.mark.slow
def test_wheel_contains_the_notebooks(tmp_path: Path) -> None:
    src = tmp_path / "src_copy"
    shutil.copytree(
        ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "reports", "data", "*.pyc", "__pycache__")
    )
    if not (src / "README.md").exists():  # hatchling needs the readme named in pyproject
        (src / "README.md").write_text("forecastkit\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(src), "-w", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("forecastkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "forecastkit/notebooks/overview.ipynb" in names
    assert "forecastkit/report/runner.py" in names


# --------------------------------------------------------------- execution
def test_run_report_writes_notebook_offline_html_and_dated_copy(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    result = run_report(tiny, params={"n": "7"}, as_of="2026-06-30", out=out, data=tmp_path, dated=True, progress=False)
    assert result.notebook_path == out / "tiny.ipynb" and result.notebook_path.is_file()
    assert result.html_path == out / "tiny.html" and result.html_path.is_file()
    assert result.dated_html_path == out / "tiny-2026-06-30.html" and result.dated_html_path.is_file()
    assert result.parameters == {"n": 7, "as_of": "2026-06-30", "data": str(tmp_path.resolve())}
    assert result.duration_s > 0
    assert sorted(p.name for p in out.iterdir()) == ["tiny-2026-06-30.html", "tiny.html", "tiny.ipynb"]  # no temp left

    html = result.html_path.read_text(encoding="utf-8")
    # offline: nothing fetched from a CDN, plotly.js embedded exactly once, every figure's data present
    assert external_scripts(html) == []
    assert '<script src="https://cdn.plot.ly' not in html and "require.min.js" not in html
    assert html.count(plotly_js()[:200]) == 1
    assert html.count("Plotly.newPlot(") == 2
    assert "alpha-trace" in html and "beta-trace" in html
    # code hidden by default, outputs shown
    assert "secret-code-marker 7 01234" in html
    assert "print(&#39;secret-code-marker&#39;" not in html and "print('secret-code-marker'" not in html

    with_code = notebook_to_html(result.notebook_path, include_code=True)
    assert "secret-code-marker" in with_code and "print" in with_code
    executed = nbformat.read(str(result.notebook_path), as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)


def test_failed_cell_names_the_cell_and_keeps_the_last_good_report(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    run_report(tiny, out=out, data=tmp_path, progress=False, html=True)
    good = (out / "tiny.html").read_bytes()
    with pytest.raises(
        ReportError,
        match=r"report 'tiny' failed in cell 2 \(counting from 0\) `if fail:`: ValueError: boom x\..*tiny\.failed\.ipynb",
    ):
        run_report(tiny, params={"fail": "true"}, out=out, data=tmp_path, progress=False)
    assert (out / "tiny.html").read_bytes() == good
    failed = nbformat.read(str(out / "tiny.failed.ipynb"), as_version=4)
    assert any(o.get("ename") == "ValueError" for c in failed.cells for o in c.get("outputs", []))
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_two_concurrent_runs_do_not_corrupt_each_other(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            run_report(tiny, params={"n": n}, out=out, data=tmp_path, progress=False)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in (11, 22)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    nb = nbformat.read(str(out / "tiny.ipynb"), as_version=4)  # a complete, valid notebook from one of the runs
    nbformat.validate(nb)
    html = (out / "tiny.html").read_text(encoding="utf-8")
    assert html.rstrip().endswith("</html>")
    assert sorted(p.name for p in out.iterdir()) == ["tiny.html", "tiny.ipynb"]


# ------------------------------------------------------------ HTML (no kernel)
def test_notebook_to_html_rewrites_plotly_json_and_drops_loader_outputs() -> None:
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=["gamma-trace"], y=[1]))
    nb = nbformat.v4.new_notebook()
    loader = nbformat.v4.new_output("display_data", data={"text/html": "<script>window.PlotlyConfig = {};</script>"})
    shown = nbformat.v4.new_output("display_data", data={"application/vnd.plotly.v1+json": fig.to_plotly_json()})
    nb.cells = [nbformat.v4.new_code_cell("fig", outputs=[loader, shown])]
    html = notebook_to_html(nb)
    assert "PlotlyConfig = {}" not in html
    assert "gamma-trace" in html and 'id="forecastkit-figure-1"' in html
    assert external_scripts(html) == []
    # no figure, no bundle
    empty = nbformat.v4.new_notebook()
    empty.cells = [nbformat.v4.new_markdown_cell("just text")]
    assert plotly_js()[:200] not in notebook_to_html(empty)


def test_external_scripts_detects_cdn_references() -> None:
    page = '<script src="https://cdn.plot.ly/plotly.min.js"></script><link rel="stylesheet" href="http://x/y.css">'
    assert external_scripts(page) == ["https://cdn.plot.ly/plotly.min.js", "http://x/y.css"]
    assert external_scripts('<script src="local.js"></script>') == []


# ---------------------------------------------------------- overview helpers
@pytest.fixture
def opps() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "opportunity_id": ["o1", "o2", "o3", "o4", "o5", "o6"],
            "owner": ["ana", "ana", "bob", "bob", "bob", "ana"],
            "stage": ["discovery", "proposal", "proposal", "won", "lost", "qualification"],
            "status": ["open", "open", "open", "won", "lost", "open"],
            "amount": [100.0, 200.0, 50.0, 300.0, 80.0, 10.0],
            "created_at": pd.to_datetime(
                ["2026-01-05", "2026-01-20", "2026-03-02", "2026-01-10", "2026-02-01", "2026-03-15"]
            ),
            "close_date": pd.to_datetime(
                ["2026-06-01", "2026-05-01", "2026-04-01", "2026-03-20", "2026-03-01", "2026-07-01"]
            ),
            "closed_at": pd.to_datetime([None, None, None, "2026-03-20", "2026-03-01", None]),
        }
    )


def test_pipeline_by_stage(opps: pd.DataFrame) -> None:
    got = ov.pipeline_by_stage(opps)
    assert list(got.columns) == ["stage", "label", "deals", "amount", "weighted_amount"]
    assert got["stage"].tolist() == ["to_contact", "qualification", "discovery", "proposal", "negotiation"]
    assert got["deals"].tolist() == [0, 1, 1, 2, 0]
    assert got["amount"].tolist() == [0.0, 10.0, 100.0, 250.0, 0.0]
    assert got["weighted_amount"].tolist() == pytest.approx([0.0, 1.0, 25.0, 125.0, 0.0])
    assert got["label"].iloc[3] == "Proposal"


def test_pipeline_by_owner_and_pivot(opps: pd.DataFrame) -> None:
    long = ov.pipeline_by_owner(opps)
    assert long.to_dict("records") == [
        {"owner": "ana", "stage": "qualification", "deals": 1, "amount": 10.0},
        {"owner": "ana", "stage": "discovery", "deals": 1, "amount": 100.0},
        {"owner": "ana", "stage": "proposal", "deals": 1, "amount": 200.0},
        {"owner": "bob", "stage": "proposal", "deals": 1, "amount": 50.0},
    ]
    wide = ov.pipeline_pivot(opps, value="amount")
    assert wide.loc["ana", "total"] == 310.0 and wide.loc["total", "total"] == 360.0
    assert wide.loc["bob", "discovery"] == 0.0
    assert list(wide.columns) == ["to_contact", "qualification", "discovery", "proposal", "negotiation", "total"]
    assert ov.pipeline_pivot(opps, value="deals").loc["total", "proposal"] == 2
    with pytest.raises(ParameterError, match="value must be 'amount' or 'deals'"):
        ov.pipeline_pivot(opps, value="weight")  # type: ignore[arg-type]


def test_monthly_flow(opps: pd.DataFrame) -> None:
    got = ov.monthly_flow(opps)
    assert got["month"].tolist() == list(pd.to_datetime(["2026-01-01", "2026-02-01", "2026-03-01"]))
    assert got["created_deals"].tolist() == [3, 1, 2]
    assert got["created_amount"].tolist() == [600.0, 80.0, 60.0]
    assert got["won_deals"].tolist() == [0, 0, 1]
    assert got["won_amount"].tolist() == [0.0, 0.0, 300.0]


def test_transforms_do_not_mutate_and_accept_a_crm_like_object(opps: pd.DataFrame) -> None:
    before = opps.copy()

    class Snap:
        opportunities = opps
        playbook = None

    pd.testing.assert_frame_equal(ov.pipeline_by_stage(Snap()), ov.pipeline_by_stage(opps))
    cmp = ov.compare_pipeline(opps[opps["owner"] == "ana"], opps, labels=("then", "now"))
    assert cmp.groupby("snapshot", sort=False)["amount"].sum().to_dict() == {"then": 310.0, "now": 360.0}
    pd.testing.assert_frame_equal(opps, before)


def test_plots_return_figures_with_the_data(opps: pd.DataFrame) -> None:
    fig = ov.plot_pipeline_by_stage(ov.pipeline_by_stage(opps))
    assert list(fig.data[0].x) == [0.0, 10.0, 100.0, 250.0, 0.0]
    fig = ov.plot_pipeline_by_owner(ov.pipeline_by_owner(opps))
    assert fig.layout.barmode == "stack" and [t.name for t in fig.data] == ["qualification", "discovery", "proposal"]
    assert list(fig.data[2].y) == [200.0, 50.0]
    fig = ov.plot_monthly_flow(ov.monthly_flow(opps), value="deals")
    assert [list(t.y) for t in fig.data] == [[3, 1, 2], [0, 0, 1]]
    cmp = ov.compare_pipeline(opps, opps, labels=("then", "now"))
    assert len(ov.plot_pipeline_comparison(cmp).data) == 2


def test_rejected_examples_keeps_a_few_per_table_and_reason() -> None:
    rejected = pd.DataFrame(
        {
            "table": ["opportunities"] * 5 + ["history"],
            "file": ["o.csv"] * 5 + ["h.csv"],
            "row": [1, 2, 3, 4, 5, 9],
            "column": ["amount"] * 4 + ["close_date", "stage"],
            "value": ["-1", "-2", "-3", "-4", "soon", "x"],
            "reason": ["negative"] * 4 + ["not a date", "unknown stage"],
        }
    )
    got = ov.rejected_examples(rejected, per_group=2)
    assert got["row"].tolist() == [1, 2, 5, 9]
    assert got["count"].tolist() == [4, 4, 1, 1]
    assert ov.rejected_examples(rejected.iloc[:0]).empty


def test_find_data_works_from_a_subfolder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from forecastkit.report.notebook import find_data

    (tmp_path / "data" / "sample").mkdir(parents=True)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert find_data("data/sample") == str((tmp_path / "data" / "sample").resolve())
    assert find_data("duckdb:///x.db") == "duckdb:///x.db"
    assert find_data("missing/folder") == "missing/folder"
    assert os.path.isabs(find_data(tmp_path))
