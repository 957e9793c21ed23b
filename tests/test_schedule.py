"""Scheduled runs: ``--as-of today``, dated outputs, exit codes, the last good report,
two runs at once, and identical numbers when a report is run twice.

The runner tests use tiny notebooks written to ``tmp_path`` (a kernel starts in
a few seconds); the determinism test runs every registered report on a small
generated company.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from forecastkit.cli import main
from forecastkit.errors import ParameterError
from forecastkit.report import REPORTS, run_report
from forecastkit.report import runner as runner_module
from forecastkit.report.schedule import is_today, publish_lock, resolve_as_of, snapshot_date


def write_notebook(
    path: Path, body: str, params: str = "data = 'data/sample'\nas_of = ''\nn = 0\nfail = False"
) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Scheduled"),
        nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def sched(tmp_path: Path) -> Path:
    return write_notebook(
        tmp_path / "sched.ipynb",
        "import time\nif fail:\n    raise RuntimeError('export broken')\ntime.sleep(0.5)\nprint(f'as_of={as_of} run-{n}-marker')",
    )


# ------------------------------------------------------------------ as_of today
def test_today_is_the_snapshot_date_from_crm_yaml_without_loading(tmp_path: Path) -> None:
    (tmp_path / "crm.yaml").write_text("as_of: 2026-11-20\n")  # no table at all: the data is not loaded
    assert snapshot_date(tmp_path) == "2026-11-20"
    assert resolve_as_of("today", tmp_path) == "2026-11-20"
    assert resolve_as_of(" TODAY ", tmp_path) == "2026-11-20"
    assert is_today("Today") and not is_today("2026-11-20") and not is_today(None)


def test_today_without_crm_yaml_is_the_latest_event(export: Path) -> None:
    (export / "crm.yaml").unlink()
    assert resolve_as_of("today", export) == "2025-03-20"  # o3 closed then; the latest event in the data


def test_other_as_of_values(export: Path) -> None:
    assert resolve_as_of(None, export) is None
    assert resolve_as_of("2026-06-30T15:00", export) == "2026-06-30"
    assert resolve_as_of(dt.date(2026, 6, 30), export) == "2026-06-30"
    for word in ("now", "yesterday"):
        with pytest.raises(ParameterError, match=f"as_of '{word}' is not supported; give a date .* or 'today'"):
            resolve_as_of(word, export)
    with pytest.raises(ParameterError, match="as_of 'soon' is not a date"):
        resolve_as_of("soon", export)


def test_cli_as_of_today_writes_a_dated_report_of_the_export_date(
    sched: Path, export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reports"
    args = ["report", str(sched), "--data", str(export), "--out", str(out), "--quiet", "--as-of", "today", "--dated"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["sched-2025-06-30.html", "sched.html", "sched.ipynb"]
    assert "as_of=2025-06-30 run-0-marker" in (out / "sched.html").read_text()
    assert str(out / "sched-2025-06-30.html") in capsys.readouterr().out
    good = (out / "sched.html").read_bytes()

    # a failing scheduled run: exit 1, the failing cell named, the last good report and its dated copy kept
    assert main([*args, "-p", "fail", "true"]) == 1
    err = capsys.readouterr().err
    assert "failed in cell 2 (counting from 0) `import time`: RuntimeError: export broken" in err
    assert "the last good report was left untouched" in err and "Traceback" not in err
    assert (out / "sched.html").read_bytes() == good
    assert (out / "sched-2025-06-30.html").read_bytes() == good
    assert sorted(p.name for p in out.iterdir()) == [
        "sched-2025-06-30.html",
        "sched.failed.ipynb",
        "sched.html",
        "sched.ipynb",
    ]


def test_cli_refuses_a_stale_export_with_max_age(
    sched: Path, export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reports"
    args = ["report", str(sched), "--data", str(export), "--out", str(out), "--quiet"]
    assert main([*args, "--max-age-days", "7"]) == 1  # the export is dated 2025-06-30
    err = capsys.readouterr().err
    assert re.search(r"the export in .* is dated 2025-06-30 \(\d+ days ago\), older than --max-age-days 7", err)
    assert not out.exists()
    assert main([*args, "--max-age-days", "-1"]) == 2


def test_run_all_resolves_today_once_for_every_report(
    export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict] = []

    def fake_run_report(name: str, **kwargs: object) -> object:
        calls.append({"name": name, **kwargs})
        (export / "crm.yaml").write_text("as_of: 2025-07-31\n")  # a new export lands while the job runs
        return runner_module.ReportResult(notebook_path=tmp_path / f"{name}.ipynb", html_path=None)

    monkeypatch.setitem(REPORTS, "explore", "explore.ipynb")
    monkeypatch.setattr(runner_module, "run_report", fake_run_report)
    runner_module.run_all(data=export, as_of="today", dated=True, out=tmp_path)
    assert [c["name"] for c in calls] == list(REPORTS)
    assert {c.get("as_of") for c in calls if "as_of" in c} == {"2025-06-30"}
    assert {c["dated_as"] for c in calls} == {"2025-06-30"}


# -------------------------------------------------------------- two runs at once
STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _end_started_processes() -> object:
    """Make sure the processes a test started (and their kernels) are gone when it ends."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _cli(*args: str, pipes: bool = True) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "forecastkit.cli", "report", *args],
        stdout=subprocess.PIPE if pipes else subprocess.DEVNULL,
        stderr=subprocess.PIPE if pipes else subprocess.DEVNULL,
        text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kernel it starts can be ended with it
    )
    STARTED.append(proc)
    return proc


def _marker(text: str) -> str:
    (found,) = set(re.findall(r"run-(\d+)-marker", text))
    return found


def test_two_processes_at_once_publish_a_consistent_report(sched: Path, export: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    base = [str(sched), "--data", str(export), "--out", str(out), "--quiet", "--as-of", "today", "--dated"]
    procs = [_cli(*base, "-p", "n", str(n)) for n in (1, 2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["sched-2025-06-30.html", "sched.html", "sched.ipynb"]  # no temp file left behind
    nb = nbformat.read(str(out / "sched.ipynb"), as_version=4)
    nbformat.validate(nb)
    html = (out / "sched.html").read_text()
    assert html.rstrip().endswith("</html>")
    # the page, its dated copy and the notebook all come from the same run
    run = _marker(html)
    assert _marker((out / "sched-2025-06-30.html").read_text()) == run
    assert _marker(json.dumps(nb.dict())) == run


def test_publishing_waits_for_the_lock(sched: Path, export: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    out.mkdir()
    with publish_lock(out, "sched"):
        proc = _cli(str(sched), "--data", str(export), "--out", str(out), "--quiet", "-p", "n", "7")
        deadline = time.monotonic() + 240
        while not any(p.name.startswith(".sched.") and p.suffix == ".html" for p in out.iterdir()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never staged its page"
            time.sleep(0.1)
        time.sleep(1.0)
        assert not (out / "sched.html").exists() and proc.poll() is None  # staged, waiting for the lock
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert _marker((out / "sched.html").read_text()) == "7"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_run_killed_midway_leaves_the_last_good_report(sched: Path, export: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    assert main(["report", str(sched), "--data", str(export), "--out", str(out), "--quiet", "-p", "n", "1"]) == 0
    good = {p.name: p.read_bytes() for p in out.iterdir()}
    (tmp_path / "slow").mkdir()
    started = tmp_path / "slow-cell-started"
    body = f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(120)"
    slow = write_notebook(tmp_path / "slow" / "sched.ipynb", body)  # same report name
    proc = _cli(str(slow), "--data", str(export), "--out", str(out), "--quiet", pipes=False)
    deadline = time.monotonic() + 240
    while not started.exists():  # wait until the kernel is inside the slow cell: the kill lands mid-run
        assert time.monotonic() < deadline and proc.poll() is None, "the slow run did not start"
        time.sleep(0.1)
    proc.terminate()  # what a scheduler does on a timeout...
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # ...then kill -9 of the job and its kernel
    proc.wait(timeout=60)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name in good} == good  # the last good report
    assert not (out / "sched.failed.ipynb").exists() or "sched.failed.ipynb" in good
    # the next run clears the temp files the killed one left behind
    assert main(["report", str(sched), "--data", str(export), "--out", str(out), "--quiet", "-p", "n", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["sched.html", "sched.ipynb"]
    assert _marker((out / "sched.html").read_text()) == "2"


# ------------------------------------------------------------------ determinism
NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:e[+-]?\d+)?", re.IGNORECASE)
_VOLATILE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # plotly div ids
    r"|T_[0-9a-f]{5}"  # pandas Styler ids
    r"|\b(?:19|20)\d\d-\d\d-\d\d[T ]\d\d:\d\d:\d\d\.\d+",  # timestamps of the run
    re.IGNORECASE,
)


def numbers_in_outputs(path: Path) -> list[tuple[int, str, list[str]]]:
    """Every number printed by the notebook's cells: (cell, mimetype, numbers) in order.

    Consecutive stream outputs of a cell are joined first: how the kernel chunks one
    cell's printed text depends on when its output buffer was flushed, not on the numbers.
    """
    nb = nbformat.read(str(path), as_version=4)
    found = []
    for i, cell in enumerate(nb.cells):
        outputs: list = []
        for out in cell.get("outputs", []):
            prev = outputs[-1] if outputs else None
            if (
                out.output_type == "stream"
                and prev is not None
                and prev.output_type == "stream"
                and prev.name == out.name
            ):
                outputs[-1] = nbformat.NotebookNode({**prev, "text": prev.text + out.text})
            else:
                outputs.append(out)
        for out in outputs:
            if out.output_type == "stream":
                texts = {"stream": out.text}
            elif out.output_type == "error":
                texts = {"error": out.evalue}
            else:
                texts = {
                    k: v if isinstance(v, str) else json.dumps(v, sort_keys=True)
                    for k, v in out.get("data", {}).items()
                }
            for mime, text in sorted(texts.items()):
                found.append((i, mime, NUMBER.findall(_VOLATILE.sub("", text))))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("report", list(REPORTS))
def test_running_a_report_twice_gives_identical_numbers(report: str, tmp_path: Path) -> None:
    from forecastkit.data.sample import generate

    data = generate(scenario="baseline", seed=3, n_reps=6, start="2025-07-01").save(tmp_path / "data")
    results: dict[str, object] = {}

    def run(tag: str) -> None:
        try:
            results[tag] = run_report(report, data=data, out=tmp_path / tag, progress=False, timeout=600)
        except BaseException as exc:  # pragma: no cover - reported below
            results[tag] = exc

    threads = [threading.Thread(target=run, args=(tag,)) for tag in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first, second = (results[t] for t in ("first", "second"))
    assert not isinstance(first, BaseException), first
    assert not isinstance(second, BaseException), second
    a, b = numbers_in_outputs(first.notebook_path), numbers_in_outputs(second.notebook_path)
    assert sum(len(n) for _, _, n in a) > 50, "the report printed hardly any number"
    assert a == b
    assert not [
        o
        for c in nbformat.read(str(first.notebook_path), as_version=4).cells
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    # the published pages differ only by volatile ids
    pages = [_VOLATILE.sub("", r.html_path.read_text()) for r in (first, second)]
    assert pages[0] == pages[1]


@pytest.mark.slow
def test_the_next_scheduled_forecast_reuses_its_backtest_with_the_same_numbers(tmp_path: Path) -> None:
    from forecastkit.data.sample import generate

    data = generate(scenario="baseline", seed=3, n_reps=6, start="2024-10-01").save(tmp_path / "data")
    out = tmp_path / "reports"
    params = {"backtest_quarters": 2}
    reused = "Past quarters reused from the last run"

    def run(folder: Path, **extra: object) -> tuple[str, list]:
        nb = run_report("forecast", data=data, out=folder, params={**params, **extra}, progress=False).notebook_path
        printed = "".join(
            o.get("text", "") for c in nbformat.read(str(nb), as_version=4).cells for o in c.get("outputs", [])
        )
        assert "Backtest skipped" not in printed
        return printed, [n for n in numbers_in_outputs(nb) if n[2]]  # the printed note on reuse has no number

    first = run(out)
    assert len(list((out / ".cache").glob("backtest-*.parquet"))) == 1
    second = run(out)
    assert reused not in first[0] and reused in second[0]
    assert first[1] == second[1]
    # opting out computes everything and keeps nothing
    third = run(tmp_path / "plain", backtest_cache="")
    assert reused not in third[0] and not (tmp_path / "plain" / ".cache").exists()
    assert third[1] == first[1]


def test_printed_text_flushed_in_pieces_is_merged_so_pages_are_identical() -> None:
    # under load the kernel can flush one print('-', action) as two outputs, and stderr before stdout
    def stream(name: str, text: object) -> dict[str, object]:
        return {"output_type": "stream", "name": name, "text": text}

    table = {"output_type": "display_data", "data": {"text/plain": "t"}, "metadata": {}}
    pieces = [stream("stdout", "-"), stream("stderr", "warn\n"), stream("stdout", [" a\n", "- b\n"]), table]
    pieces += [stream("stdout", "after\n")]
    whole = [stream("stdout", "- a\n- b\n"), stream("stderr", "warn\n"), table, stream("stdout", "after\n")]
    assert runner_module._merged_streams(pieces) == whole
    assert runner_module._merged_streams(whole) == whole
    # text on either side of a display is never moved across it
    assert runner_module._merged_streams([table, stream("stdout", "x")]) == [table, stream("stdout", "x")]
