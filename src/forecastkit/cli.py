"""The ``forecastkit`` command: run reports, create the sample company, check an export.

A thin wrapper over :mod:`forecastkit.report` and :mod:`forecastkit.data`.
Errors are printed as one line on stderr (no traceback) with exit code 2 for
a usage mistake (unknown report, parameter, bad date) and 1 for a failure
(a report that crashed, rejected rows, an unreadable export).
"""

from __future__ import annotations

import argparse
import inspect
import signal
import sys
from collections.abc import Sequence

from forecastkit.errors import ForecastkitError, ParameterError, PeriodError, PlaybookError

__all__ = ["main", "build_parser"]

_USAGE_ERRORS = (ParameterError, PeriodError, PlaybookError)
_SCENARIOS = ("baseline", "wide_pipeline", "slow_cycle", "optimistic", "stage_only")

_EPILOG = """\
examples:
  forecastkit sample --out data/sample            create the sample company (CSV files)
  forecastkit validate exports/2026-11-30         check a CRM export: rows kept and rejected
  forecastkit list                                the reports you can run
  forecastkit report overview --data exports/2026-11-30
                                                  reports/overview.html from your export
  forecastkit report all --data exports/latest --dated
                                                  every report, plus a dated copy of each page
  forecastkit report overview --as-of 2026-06-30 --period 2026-Q3 -p owner "Ana Ruiz"
  forecastkit report forecast --as-of today --dated --out /srv/reports
                                                  the scheduled run: 'today' is the export's date
  forecastkit report overview --mask-personal-data --mask-names
                                                  a page safe to forward: people pseudonymised

Reports are written to reports/ (change with --out) as an HTML page that opens
in any browser without network access, plus the executed notebook.
Exit codes: 0 success, 1 failure (a report failed, rows were rejected, the export
is older than --max-age-days), 2 wrong usage. A failed report names the failing cell
and leaves the last good page in place.
"""


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("forecastkit")
    except Exception:  # pragma: no cover - source tree without install
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``forecastkit`` command."""
    parser = argparse.ArgumentParser(
        prog="forecastkit",
        description="Sales forecasts and reports from a CRM export.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"forecastkit {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    rep = sub.add_parser(
        "report",
        help="run a report and write it as an HTML page",
        description="Run a report notebook on a CRM export and write <out>/<name>.html and <out>/<name>.ipynb.",
        epilog="example:\n  forecastkit report overview --data exports/latest --as-of 2026-06-30",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument("name", metavar="NAME", help="report name (see `forecastkit list`), or 'all' for every report")
    rep.add_argument(
        "--data", default="data/sample", metavar="DIR", help="folder of the CRM export (default: data/sample)"
    )
    rep.add_argument(
        "--as-of",
        metavar="DATE",
        help="compute the report as of this date, YYYY-MM-DD, or 'today' for the snapshot date of the export "
        "(read once at the start from its crm.yaml or latest event, never from the clock; default: the export's date)",
    )
    rep.add_argument("--period", metavar="P", help="fiscal period, e.g. 2026-Q4, 2026-H1, 2026-11 or FY2026")
    rep.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help="another report parameter (repeatable); the value is read as the type of the default",
    )
    rep.add_argument("--out", default="reports", metavar="DIR", help="output folder (default: reports)")
    rep.add_argument("--no-html", action="store_true", help="only write the executed notebook")
    rep.add_argument("--with-code", action="store_true", help="show the Python code in the HTML page")
    rep.add_argument("--dated", action="store_true", help="also write <name>-<as-of date>.html, to keep a history")
    rep.add_argument(
        "--mask-personal-data",
        action="store_true",
        help="replace contact names, e-mails, phones, people named on deals and visit notes by pseudonyms",
    )
    rep.add_argument(
        "--mask-names",
        action="store_true",
        help="also replace rep, manager, deal and account names by pseudonyms (implies --mask-personal-data)",
    )
    rep.add_argument(
        "--max-age-days",
        type=int,
        metavar="N",
        help="fail (exit 1) without running when the export's snapshot date is more than N days before today's "
        "date on this computer: catches a stale export in a scheduled run",
    )
    rep.add_argument("--quiet", action="store_true", help="no progress bar")
    rep.add_argument("--timeout", type=float, metavar="SECONDS", help="time allowed per notebook cell")

    smp = sub.add_parser(
        "sample",
        help="create the synthetic sample company",
        description="Write a synthetic CRM export (with known ground truth) to try forecastkit on.",
    )
    smp.add_argument("--scenario", default="baseline", choices=_SCENARIOS, help="kind of company (default: baseline)")
    smp.add_argument(
        "--seed", type=int, default=0, metavar="N", help="random seed; the same seed gives the same data (default: 0)"
    )
    smp.add_argument("--out", default="data/sample", metavar="DIR", help="output folder (default: data/sample)")
    smp.add_argument("--format", default="csv", choices=("csv", "parquet"), help="file format (default: csv)")

    val = sub.add_parser(
        "validate",
        help="check a CRM export: rows read, kept and rejected",
        description="Load a CRM export and show how many rows of each table were kept or rejected, and why. "
        "Exits with 1 when any row was rejected or a table is unusable.",
    )
    val.add_argument("dir", metavar="DIR", help="folder of the CRM export")
    val.add_argument(
        "--examples", type=int, default=3, metavar="N", help="rejected rows shown per table and reason (default: 3)"
    )

    sub.add_parser("list", help="list the reports", description="List the reports `forecastkit report` can run.")
    return parser


def _check_age(data: str, max_age_days: int) -> None:
    """Fail when the export is older than ``max_age_days`` (the one place that reads the clock)."""
    import datetime as dt

    from forecastkit.errors import DataError
    from forecastkit.report.runner import _resolve_data
    from forecastkit.report.schedule import snapshot_date

    if max_age_days < 0:
        raise ParameterError(f"--max-age-days must be 0 or more, got {max_age_days}")
    snap = dt.date.fromisoformat(snapshot_date(_resolve_data(data)))
    age = (dt.date.today() - snap).days
    if age > max_age_days:
        raise DataError(
            f"the export in {data} is dated {snap} ({age} days ago), older than --max-age-days {max_age_days}: "
            "the CRM export did not refresh; no report was written and the last good one is still in place"
        )


def _cmd_report(args: argparse.Namespace) -> int:
    from forecastkit.report import run_all, run_report

    if args.max_age_days is not None:
        _check_age(args.data, args.max_age_days)
    params = dict(args.param)
    kwargs = dict(
        data=args.data,
        as_of=args.as_of,
        period=args.period,
        out=args.out,
        html=not args.no_html,
        include_code=args.with_code,
        progress=not args.quiet,
        timeout=args.timeout,
        dated=args.dated,
        mask_personal_data=args.mask_personal_data,
        mask_names=args.mask_names,
    )
    if args.name == "all":
        results = run_all(params=params, **kwargs)
    else:
        results = [run_report(args.name, params=params, **kwargs)]
    for r in results:
        shown = r.html_path or r.notebook_path
        print(f"{shown}  ({r.duration_s:.1f} s)")
        if r.dated_html_path:
            print(r.dated_html_path)
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from forecastkit.data.sample import generate

    sample = generate(scenario=args.scenario, seed=args.seed)
    if "format" in inspect.signature(sample.save).parameters:
        path = sample.save(args.out, format=args.format)
    elif args.format == "csv":
        path = sample.save(args.out)
    else:
        raise ParameterError("this version of the sample generator only writes CSV; drop --format parquet")
    print(f"sample company ({args.scenario}, seed {args.seed}) written to {path or args.out}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    import pandas as pd

    import forecastkit
    from forecastkit.report.overview import rejected_examples

    crm = forecastkit.load(args.dir)
    report = crm.load_report
    with pd.option_context("display.max_rows", 200, "display.max_columns", 20, "display.width", 160):
        print("Row accounting:")
        print(report.summary.to_string(index=False))
        rejected = report.rejected
        if rejected is not None and len(rejected):
            print(f"\nRejected rows ({len(rejected)}), a few per table and reason:")
            print(rejected_examples(rejected, per_group=args.examples).to_string(index=False))
    n_rejected = len(report.rejected) if report.rejected is not None else 0
    if n_rejected or not report.ok:
        print(
            f"\n{n_rejected} row(s) rejected: fix them in the export, or they are left out of every report.",
            file=sys.stderr,
        )
        return 1
    print("\nAll rows kept.")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from forecastkit.report import list_reports

    reports = list_reports()
    width = max([len(n) for n in reports["name"]] + [4])
    for row in reports.itertuples(index=False):
        mark = "" if row.registered else "  (not in 'all')"
        print(f"{row.name:<{width}}  {row.title}{mark}")
    return 0


_COMMANDS = {"report": _cmd_report, "sample": _cmd_sample, "validate": _cmd_validate, "list": _cmd_list}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``forecastkit`` command; returns the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 on failure, 2 on a usage error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, argparse usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    previous = _terminate_as_interrupt()
    try:
        return _COMMANDS[args.command](args)
    except _USAGE_ERRORS as exc:
        print(f"forecastkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ForecastkitError as exc:
        print(f"forecastkit {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the last good report was left in place", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _terminate_as_interrupt() -> object:
    """Treat SIGTERM (``kill``, a scheduler's timeout) like Ctrl-C, so that temp files are removed and the
    kernel is shut down; returns the previous handler (None when it cannot be set, e.g. in a thread)."""
    try:
        return signal.signal(signal.SIGTERM, _raise_interrupt)
    except (ValueError, OSError, AttributeError):  # not the main thread, or no SIGTERM on this platform
        return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
