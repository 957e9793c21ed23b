"""Tests of the ``forecastkit`` command line (in-process through ``main``, and once as a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from forecastkit.cli import main


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "data = 'data/sample'\ncode = '01234'\nfail = False", metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_code_cell(
            "assert isinstance(code, str) and code == '01234'\nif fail:\n    raise RuntimeError('kaput')"
        ),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("forecastkit ")
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "forecastkit report overview --data" in text and "Exit codes" in text
    assert main(["report", "--help"]) == 0
    assert "--as-of DATE" in capsys.readouterr().out


def test_usage_errors_exit_2_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["report", "nope"]) == 2
    err = capsys.readouterr().err
    assert "forecastkit report: error: unknown report 'nope'; known reports:" in err
    assert "Traceback" not in err


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("overview") and "Pipeline overview" in out
    assert "explore" in out and "(not in 'all')" in out


def test_report_parameter_errors(tiny: Path, export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tiny), "--data", str(export), "-p", "bogus", "1"]) == 2
    assert "has no parameter 'bogus'; allowed parameters: data, code, fail" in capsys.readouterr().err
    assert main(["report", str(tiny), "--data", str(export), "-p", "fail", "perhaps"]) == 2
    assert "parameter 'fail' expects bool (default False), got 'perhaps'" in capsys.readouterr().err
    assert main(["report", str(tiny), "--data", str(export), "--as-of", "2025-06-30"]) == 2
    assert "no parameter 'as_of'" in capsys.readouterr().err


def test_report_runs_and_failure_exits_1(
    tiny: Path, export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reports"
    args = ["report", str(tiny), "--data", str(export), "--out", str(out), "--quiet", "-p", "code", "01234"]
    assert main(args) == 0
    assert (out / "tiny.html").is_file() and (out / "tiny.ipynb").is_file()
    assert str(out / "tiny.html") in capsys.readouterr().out
    assert main([*args, "-p", "fail", "true", "--no-html"]) == 1
    err = capsys.readouterr().err
    assert "failed in cell 1 (counting from 0) `assert isinstance(code, str)" in err and "RuntimeError: kaput" in err
    assert "Traceback" not in err
    assert (out / "tiny.failed.ipynb").is_file() and (out / "tiny.html").is_file()


def test_validate_clean_and_rejected(export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(export)]) == 0
    out = capsys.readouterr().out
    assert "Row accounting:" in out and "opportunities" in out and "All rows kept." in out

    with (export / "opportunities.csv").open("a") as f:
        f.write("o4,bob,soon,2025-10-01,50,proposal,open,\n")
    assert main(["validate", str(export)]) == 1
    captured = capsys.readouterr()
    assert "Rejected rows (1)" in captured.out and "soon" in captured.out and "not a date" in captured.out
    assert "1 row(s) rejected" in captured.err

    assert main(["validate", str(tmp_path / "nowhere")]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_sample_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sample"
    assert main(["sample", "--seed", "1", "--out", str(out)]) == 0
    assert (out / "opportunities.csv").is_file()
    assert "written to" in capsys.readouterr().out
    assert main(["sample", "--scenario", "bogus"]) == 2


def test_subprocess_error_is_one_line_on_stderr() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "forecastkit.cli", "report", "nope"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "unknown report 'nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_python_dash_m_forecastkit_is_the_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "forecastkit", "list"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "forecast" in proc.stdout.split()
    bad = subprocess.run([sys.executable, "-m", "forecastkit", "report", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown report 'nope'" in bad.stderr
