"""Run report notebooks with papermill and publish them as offline HTML.

A report is a thin notebook shipped inside the package (``forecastkit/notebooks``
in a wheel, the top-level ``notebooks/`` folder in a source checkout). The
runner

* checks the parameters against the notebook's ``parameters`` cell *before*
  any kernel starts (papermill only warns about unknown names; we reject them,
  and strings from the command line are converted to the type of the default);
* executes the notebook with papermill in the caller's working directory
  (``data`` is made absolute first);
* writes ``<out>/<name>.ipynb`` and ``<out>/<name>.html`` atomically: a temp
  file with a unique name in the same folder, then :func:`os.replace`, so a
  failed run never overwrites the last good report and two concurrent runs
  never corrupt each other;
* publishes the set of files (page, notebook, dated copy) under a lock on the
  output folder (:func:`forecastkit.report.schedule.publish_lock`), so two
  runs at once never mix one run's page with the other's notebook;
* on a failing cell raises :class:`~forecastkit.errors.ReportError` naming the
  cell and keeps the executed notebook as ``<out>/<name>.failed.ipynb``;
* resolves ``as_of="today"`` once, before anything runs, to the snapshot date
  of the data (never the clock; see :mod:`forecastkit.report.schedule`);
* with ``mask_personal_data=True`` runs the notebook on a masked copy of the
  export (:func:`forecastkit.report.privacy.mask_export`), so any report can
  be sent to a wide audience.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import importlib.resources
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forecastkit.errors import ForecastkitError, ParameterError, ReportError

__all__ = [
    "REPORTS",
    "ReportResult",
    "notebooks_dir",
    "notebook_path",
    "list_reports",
    "report_parameters",
    "validate_parameters",
    "run_report",
    "run_all",
]

#: Registered reports: name -> notebook file in the notebooks folder. ``run_all``
#: (the scheduled job, ``forecastkit report all``) runs these, in this order.
#: Adding a report is one line here plus its notebook.
REPORTS: dict[str, str] = {
    "overview": "overview.ipynb",
    "forecast": "forecast.ipynb",
    "diagnosis": "diagnosis.ipynb",
    "winloss": "winloss.ipynb",
    "dashboards": "dashboards.ipynb",
    "pipeline_review": "pipeline_review.ipynb",
    "probabilities": "probabilities.ipynb",
}

#: The notebook parameter naming a folder where a report keeps work for its next run (the
#: forecast report's backtest, :mod:`~forecastkit.forecast.backtest_cache`), and the folder
#: inside ``out`` it defaults to. Pass ``params={"backtest_cache": ""}`` to compute everything.
CACHE_PARAMETER = "backtest_cache"
CACHE_FOLDER = ".cache"
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}
_INT = re.compile(r"[+-]?\d+")
_SIMPLE_TYPES = {"str", "int", "float", "bool", "list", "dict", "tuple"}
_KERNEL_FIX = "install it with: .venv/bin/python -m ipykernel install --sys-prefix --name {kernel}"


@dataclass(frozen=True)
class ReportResult:
    """What :func:`run_report` produced.

    Attributes
    ----------
    notebook_path : Path
        The executed notebook, ``<out>/<name>.ipynb``.
    html_path : Path or None
        The offline HTML page, ``<out>/<name>.html`` (None with ``html=False``).
    parameters : dict
        The parameters passed to the notebook, after conversion.
    duration_s : float
        Wall-clock seconds of the run (execution and export).
    dated_html_path : Path or None
        The dated copy ``<out>/<name>-<as_of>.html`` when ``dated=True``.
    """

    notebook_path: Path
    html_path: Path | None
    parameters: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    dated_html_path: Path | None = None


# ----------------------------------------------------------------- discovery
def notebooks_dir() -> Path:
    """The folder holding the report notebooks.

    The installed package's ``forecastkit/notebooks`` (a wheel force-includes
    the top-level ``notebooks/`` folder there), else the source checkout's
    ``notebooks/`` (editable installs).

    Raises
    ------
    ReportError
        Neither folder exists.
    """
    with contextlib.suppress(ModuleNotFoundError, TypeError, NotImplementedError):
        packaged = importlib.resources.files("forecastkit") / "notebooks"
        if packaged.is_dir():
            return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[3] / "notebooks"
    if checkout.is_dir():
        return checkout
    raise ReportError(
        f"cannot find the report notebooks: neither forecastkit/notebooks in the installed package "
        f"nor {checkout} exists. Reinstall forecastkit (pip install forecastkit) or run from a source checkout."
    )


def _discovered() -> dict[str, Path]:
    folder = notebooks_dir()
    return {p.stem: p for p in sorted(folder.glob("*.ipynb")) if not p.name.startswith((".", "_"))}


def notebook_path(name: str | os.PathLike[str]) -> Path:
    """The notebook of report ``name``; ``name`` may also be the path of an ``.ipynb`` file.

    Raises
    ------
    ParameterError
        No such report; the message lists the known ones.
    """
    text = os.fspath(name)
    if text.endswith(".ipynb"):
        path = Path(text)
        if not path.is_file():
            raise ParameterError(f"notebook {text!r} does not exist")
        return path.resolve()
    found = _discovered()
    if text in REPORTS and REPORTS[text] and (notebooks_dir() / REPORTS[text]).is_file():
        return notebooks_dir() / REPORTS[text]
    if text in found:
        return found[text]
    known = sorted(set(found) | {k for k in REPORTS if k in found})
    raise ParameterError(
        f"unknown report {text!r}; known reports: {', '.join(known) or '(none)'}. "
        "Run `forecastkit list` to see them, or pass the path of a .ipynb file."
    )


def _title(path: Path) -> str:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            source = "".join(cell.get("source", ""))
            for line in source.splitlines():
                if line.strip():
                    return line.lstrip("#").strip()
    return ""


def list_reports():  # -> pd.DataFrame
    """The report notebooks found in :func:`notebooks_dir`.

    Returns
    -------
    pandas.DataFrame
        One row per notebook, registered reports first, with columns

        ``name``        the report name (``forecastkit report NAME``)
        ``title``       the first line of its first markdown cell
        ``registered``  True when ``forecastkit report all`` runs it
        ``path``        the notebook file
    """
    import pandas as pd

    found = _discovered()
    names = [n for n in REPORTS if n in found] + sorted(n for n in found if n not in REPORTS)
    rows = [{"name": n, "title": _title(found[n]), "registered": n in REPORTS, "path": str(found[n])} for n in names]
    return pd.DataFrame(rows, columns=["name", "title", "registered", "path"])


# ---------------------------------------------------------------- parameters
@dataclass(frozen=True)
class _Param:
    name: str
    type: str  # one of _SIMPLE_TYPES or "any"
    default: str  # the source text of the default


def _declared(path: Path) -> dict[str, _Param]:
    import papermill

    try:
        info = papermill.inspect_notebook(str(path))
    except Exception as exc:  # papermill raises plain exceptions for unreadable notebooks
        raise ReportError(f"cannot read the parameters of {path}: {type(exc).__name__}: {exc}") from exc
    params = {}
    for name, p in info.items():
        typ = str(p.get("inferred_type_name") or "None")
        default = str(p.get("default", ""))
        if typ not in _SIMPLE_TYPES:  # no annotation: infer from the default's literal
            try:
                value = ast.literal_eval(default)
            except (ValueError, SyntaxError):
                value = None
            typ = type(value).__name__ if value is not None and type(value).__name__ in _SIMPLE_TYPES else "any"
        params[name] = _Param(name, typ, default)
    return params


def report_parameters(name: str | os.PathLike[str]) -> dict[str, tuple[str, str]]:
    """The parameters a report accepts.

    Returns
    -------
    dict
        name -> (type name, default as written in the notebook).
    """
    return {k: (p.type, p.default) for k, p in _declared(notebook_path(name)).items()}


def _bad(report: str, p: _Param, value: Any) -> ParameterError:
    return ParameterError(
        f"report {report!r}: parameter {p.name!r} expects {p.type} (default {p.default}), "
        f"got {value!r} ({type(value).__name__})"
    )


def _coerce(report: str, p: _Param, value: Any) -> Any:
    if p.type == "any":
        return value
    if p.type == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if isinstance(value, dt.datetime):  # includes pandas.Timestamp
            return (
                value.date().isoformat()
                if value == value.replace(hour=0, minute=0, second=0, microsecond=0)
                else value.isoformat()
            )
        if isinstance(value, dt.date):
            return value.isoformat()
        raise _bad(report, p, value)
    if p.type == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _bad(report, p, value)
    if p.type == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INT.fullmatch(value.strip()):
            return int(value.strip())
        raise _bad(report, p, value)
    if p.type == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise _bad(report, p, value)
    # list / dict / tuple
    target = {"list": list, "dict": dict, "tuple": tuple}[p.type]
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise _bad(report, p, value) from None
    if p.type in ("list", "tuple") and isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, target):
        return value
    raise _bad(report, p, value)


def validate_parameters(name: str | os.PathLike[str], params: Mapping[str, Any]) -> dict[str, Any]:
    """Check and convert parameters for report ``name`` without starting a kernel.

    Parameters
    ----------
    name : str or path
        A report name or the path of a notebook.
    params : mapping
        Parameter name -> value. Strings (as typed on the command line) are
        converted to the type of the notebook's default: ``"3"`` becomes 3 when
        the default is an int, ``"01234"`` and ``"2026-Q4"`` stay strings when
        the default is a string.

    Returns
    -------
    dict
        The converted parameters.

    Raises
    ------
    ParameterError
        An unknown name (the message lists the allowed ones) or a value that
        does not fit the expected type (the message names both).
    """
    path = notebook_path(name)
    report = Path(path).stem
    declared = _declared(path)
    unknown = [k for k in params if k not in declared]
    if unknown:
        allowed = ", ".join(declared) or "(none: the notebook has no cell tagged 'parameters')"
        raise ParameterError(
            f"report {report!r} has no parameter {', '.join(map(repr, unknown))}; allowed parameters: {allowed}"
        )
    return {k: _coerce(report, declared[k], v) for k, v in params.items()}


# ----------------------------------------------------------------- execution
def _check_kernel(kernel: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        raise ReportError(
            f"the Jupyter kernel {kernel!r} is not installed; {_KERNEL_FIX.format(kernel=kernel)}"
        ) from None


def _resolve_data(data: str | os.PathLike[str]) -> str:
    text = os.fspath(data)
    if "://" in text:  # a database URL: passed as is
        return text
    path = Path(text).expanduser().resolve()
    if not path.exists():
        raise ParameterError(
            f"data folder {text!r} does not exist (resolved to {path}); point --data at a CRM export, "
            "or create the sample company with `forecastkit sample --out data/sample`"
        )
    return str(path)


def _normalise_as_of(as_of: Any, data: Any = None) -> str:
    from forecastkit.report.schedule import resolve_as_of

    resolved = resolve_as_of(as_of, data if data is not None else ".")
    if resolved is None:
        raise ParameterError("as_of None is not a date; use YYYY-MM-DD, e.g. 2026-06-30, or 'today'")
    return resolved


def _tmp_path(out: Path, name: str, suffix: str) -> Path:
    return out / f".{name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{suffix}"


_TEMP_NAME = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d+)-[0-9a-f]{12}\.tmp(?:\.\w+)?$")


def _remove_stale_temps(out_dir: Path, report: str) -> None:
    """Delete temp files that runs of ``report`` killed before they could clean up (their process is gone)."""
    for path in out_dir.glob(f".{report}*.tmp*"):
        m = _TEMP_NAME.match(path.name)
        if not m or not m.group("stem").startswith(report):
            continue
        pid = int(m.group("pid"))
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except (PermissionError, OSError):  # alive (someone else's) or cannot tell: leave it
            continue


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line.strip()[:80]
    return ""


def _source_index(path: Path, source: str, fallback: int) -> int:
    """Index of the cell with ``source`` in the *original* notebook (papermill adds a cell)."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return fallback
    for i, cell in enumerate(nb.get("cells", [])):
        text = cell.get("source", "")
        if ("".join(text) if isinstance(text, list) else text) == source:
            return i
    return fallback


def _snapshot_date(data: str) -> str:
    from forecastkit.report.schedule import snapshot_date

    return snapshot_date(data)


def _merged_streams(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge each run of consecutive stream outputs into one stdout then one stderr output.

    The kernel flushes printed text on a timer, so under load one ``print('-', action)`` can
    arrive as two outputs, and stdout and stderr can swap; a display flushes both streams first,
    so only the split inside a run of streams varies from run to run.
    """
    merged: list[dict[str, Any]] = []
    run: dict[str, dict[str, Any]] = {}

    def close_run() -> None:
        merged.extend(run[n] for n in sorted(run, key=lambda n: (n != "stdout", n != "stderr", n)))
        run.clear()

    for output in outputs:
        if output.get("output_type") != "stream":
            close_run()
            merged.append(output)
            continue
        text = output.get("text", "")
        text = "".join(text) if isinstance(text, list) else text
        name = output.get("name", "stdout")
        if name in run:
            run[name]["text"] += text
        else:
            run[name] = {**output, "text": text}
    close_run()
    return merged


def _stable_outputs(path: Path) -> None:
    """Make the same inputs publish byte-identical pages and notebooks: give papermill's
    injected-parameters cell a fixed id (papermill draws a random one) and merge printed text
    that the kernel happened to flush in pieces (:func:`_merged_streams`)."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    for cell in nb.get("cells", []):
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell["id"] = "injected-parameters"
        if cell.get("outputs"):
            cell["outputs"] = _merged_streams(cell["outputs"])
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def run_report(
    name: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] = "data/sample",
    as_of: Any = None,
    period: str | None = None,
    params: Mapping[str, Any] | None = None,
    out: str | os.PathLike[str] = "reports",
    html: bool = True,
    include_code: bool = False,
    kernel: str = "python3",
    progress: bool = True,
    timeout: float | None = None,
    dated: bool = False,
    mask_personal_data: bool = False,
    mask_names: bool = False,
    dated_as: Any = None,
) -> ReportResult:
    """Execute a report notebook and publish it as ``<out>/<name>.ipynb`` and ``.html``.

    Parameters
    ----------
    name : str or path
        A report name (see :func:`list_reports`) or the path of a notebook.
    data : str or path, default "data/sample"
        The CRM export folder (or a database URL); relative paths are resolved
        against the current directory before the kernel starts.
    as_of : date-like or "today", optional
        Compute the report as of this date (default: the snapshot's date).
        ``"today"`` is resolved once, before the kernel starts, to the
        snapshot date of the data (``crm.yaml``'s ``as_of``, else its latest
        event) -- never to the computer's clock.
    period : str, optional
        Fiscal period such as ``"2026-Q4"`` for reports that take one.
    params : mapping, optional
        Other notebook parameters; strings are converted to the default's type.
    out : str or path, default "reports"
        Output folder (created if missing). Reports that keep work for their next
        run (the forecast report's backtest of past quarters) keep it in
        ``<out>/.cache``: the next run reuses it while nothing known at its latest
        checkpoint changed (:mod:`~forecastkit.forecast.backtest_cache`). Pass
        ``params={"backtest_cache": ""}`` to compute everything again.
    html : bool, default True
        Also write the offline HTML page.
    include_code : bool, default False
        Show code cells in the HTML page.
    kernel : str, default "python3"
        Jupyter kernel name.
    progress : bool, default True
        Show papermill's progress bar on stderr.
    timeout : float, optional
        Seconds allowed per cell (None: no limit).
    dated : bool, default False
        Also write ``<out>/<name>-<as_of>.html`` (the snapshot's date when
        ``as_of`` is not given, read before the kernel starts), to keep a
        history of reports.
    mask_personal_data : bool, default False
        Run the report on a masked copy of the export: contact names, e-mails,
        phones, the people named on deals and visit-report texts are replaced
        by pseudonyms (:mod:`forecastkit.report.privacy`). For reports sent to
        a wide audience. Needs an export folder (not a database URL).
    mask_names : bool, default False
        Also mask rep, manager, deal and account names (implies
        ``mask_personal_data``).
    dated_as : date-like, optional
        The date in the dated file name when it must differ from ``as_of``
        (``run_all`` passes the date it resolved once for every report).

    Returns
    -------
    ReportResult

    Raises
    ------
    ParameterError
        Unknown report, unknown parameter, wrong type, missing data folder,
        bad ``as_of`` or masking asked for a database URL -- all detected
        before any kernel starts.
    ReportError
        The kernel is missing, a cell failed (the message names the cell and
        the exception; the executed notebook is kept as
        ``<out>/<name>.failed.ipynb``), or the output could not be written.
        The last good report is left untouched.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    started = time.perf_counter()
    src = notebook_path(name)
    report = src.stem
    declared = _declared(src)
    merged: dict[str, Any] = dict(params or {})
    data_path = None
    mask = bool(mask_personal_data or mask_names)
    from forecastkit.report.schedule import is_today

    if mask or "data" in declared or (dated and as_of is None and dated_as is None) or is_today(as_of):
        data_path = _resolve_data(data)
    if mask and data_path is not None and "://" in data_path:
        raise ParameterError(
            f"cannot mask personal data in {data_path!r}: masking works on an export folder; "
            "export the database to a folder first, or run without --mask-personal-data"
        )
    for key, value in (("data", data), ("as_of", as_of), ("period", period)):
        if key in merged:
            raise ParameterError(f"pass {key!r} as the {key}= argument (or --{key.replace('_', '-')}), not in params")
        if value is None or (key == "data" and key not in declared):
            continue
        if key == "data":
            value = data_path
        elif key == "as_of":
            value = _normalise_as_of(value, data_path)
        merged[key] = value
    if CACHE_PARAMETER in declared and CACHE_PARAMETER not in merged:  # scheduled runs reuse past work
        merged[CACHE_PARAMETER] = str(Path(out).expanduser().resolve() / CACHE_FOLDER)
    parameters = validate_parameters(src, merged)
    _check_kernel(kernel)
    stamp = None
    if dated:
        if dated_as is not None:
            stamp = _normalise_as_of(dated_as, data_path)
        elif "as_of" in merged:
            stamp = merged["as_of"]
        elif as_of is not None:
            stamp = _normalise_as_of(as_of, data_path)
        else:
            stamp = _snapshot_date(str(data_path))

    out_dir = Path(out).expanduser().resolve()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create the output folder {out_dir}: {exc}") from exc
    final_nb = out_dir / f"{report}.ipynb"
    final_html = out_dir / f"{report}.html"
    failed_nb = out_dir / f"{report}.failed.ipynb"
    _remove_stale_temps(out_dir, report)
    tmp_nb = _tmp_path(out_dir, report, ".ipynb")
    masked_dir = None
    try:
        if mask:
            from forecastkit.report.privacy import mask_export

            masked_dir = _tmp_path(out_dir, report, ".masked")
            masked_dir.mkdir()
            masked = mask_export(data_path, masked_dir / "data", names=mask_names)
            if "data" in parameters:
                parameters["data"] = str(masked)
        try:
            papermill.execute_notebook(
                str(src),
                str(tmp_nb),
                parameters=parameters,
                kernel_name=kernel,
                progress_bar=progress,
                cwd=str(Path.cwd()),
                execution_timeout=timeout,
                request_save_on_cell_execute=False,
            )
        except PapermillExecutionError as exc:
            index = _source_index(src, exc.source, exc.cell_index)
            if tmp_nb.exists():
                os.replace(tmp_nb, failed_nb)
            raise ReportError(
                f"report {report!r} failed in cell {index} (counting from 0) `{_first_line(exc.source)}`: "
                f"{exc.ename}: {exc.evalue}. The executed notebook is kept at {failed_nb}; "
                "the last good report was left untouched."
            ) from exc
        except ForecastkitError:
            raise
        except Exception as exc:  # kernel died, cell timeout, unreadable notebook...
            if tmp_nb.exists():
                os.replace(tmp_nb, failed_nb)
            raise ReportError(
                f"report {report!r} could not run: {type(exc).__name__}: {exc}. "
                "The last good report was left untouched."
            ) from exc

        _stable_outputs(tmp_nb)
        html_text = None
        if html:
            from forecastkit.report.html import notebook_to_html

            try:
                html_text = notebook_to_html(tmp_nb, include_code=include_code)
            except Exception as exc:
                raise ReportError(
                    f"report {report!r} ran but its HTML export failed: {type(exc).__name__}: {exc}"
                ) from exc
        dated_path = out_dir / f"{report}-{stamp}.html" if html_text is not None and stamp else None
        from forecastkit.report.schedule import publish_lock

        # write the pages next to their final names first (slow), then swap the set in under the lock (fast)
        staged: list[tuple[Path, Path]] = []
        try:
            for target in [p for p in (dated_path, final_html if html_text is not None else None) if p]:
                tmp = _tmp_path(out_dir, target.stem, target.suffix)
                staged.append((tmp, target))
                tmp.write_text(html_text or "", encoding="utf-8")
            with publish_lock(out_dir, report):
                for tmp, target in staged:
                    os.replace(tmp, target)
                os.replace(tmp_nb, final_nb)
                failed_nb.unlink(missing_ok=True)  # the last run succeeded: the failure is history
        except OSError as exc:
            raise ReportError(
                f"report {report!r} ran but could not be written to {out_dir}: {exc}. "
                "The last good report was left untouched."
            ) from exc
        finally:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
    finally:
        tmp_nb.unlink(missing_ok=True)
        if masked_dir is not None:
            shutil.rmtree(masked_dir, ignore_errors=True)
    if mask and "data" in parameters:
        parameters["data"] = data_path
    return ReportResult(
        notebook_path=final_nb,
        html_path=final_html if html else None,
        parameters=parameters,
        duration_s=time.perf_counter() - started,
        dated_html_path=dated_path,
    )


def run_all(
    *,
    params: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> list[ReportResult]:
    """Run every registered report (:data:`REPORTS`) -- the scheduled job.

    Each report receives the ``params`` it declares (a parameter that no
    registered report declares is an error). A failing report does not stop
    the others; the failures are raised together at the end.

    Parameters
    ----------
    params : mapping, optional
        Notebook parameters, shared by the reports that declare them.
    **kwargs
        Passed to :func:`run_report` (``data``, ``as_of``, ``period``, ``out``...).

    Returns
    -------
    list of ReportResult
        In :data:`REPORTS` order.

    Raises
    ------
    ParameterError
        A parameter is declared by no registered report.
    ReportError
        One or more reports failed; the message lists each failure.
    """
    params = dict(params or {})
    declared = {n: _declared(notebook_path(n)) for n in REPORTS}
    unused = [k for k in params if not any(k in d for d in declared.values())]
    if unused:
        raise ParameterError(f"no report accepts parameter {', '.join(map(repr, unused))}")
    kwargs = dict(kwargs)
    if kwargs.get("as_of") is not None or kwargs.get("dated"):
        # one date for every report, resolved before the first one runs ("today" included)
        data_path = _resolve_data(kwargs.get("data", "data/sample"))
        if kwargs.get("as_of") is not None:
            kwargs["as_of"] = _normalise_as_of(kwargs["as_of"], data_path)
        if kwargs.get("dated") and kwargs.get("dated_as") is None:
            kwargs["dated_as"] = kwargs.get("as_of") or _snapshot_date(data_path)
    results, failures = [], []
    for report_name, decl in declared.items():
        own = {k: v for k, v in params.items() if k in decl}
        call = {k: v for k, v in kwargs.items() if k not in ("as_of", "period") or k in decl}
        try:
            results.append(run_report(report_name, params=own, **call))
        except ReportError as exc:
            failures.append(str(exc))
    if failures:
        raise ReportError(f"{len(failures)} of {len(REPORTS)} reports failed:\n- " + "\n- ".join(failures))
    return results
