"""Report notebooks: run them with papermill and publish offline HTML pages.

>>> from forecastkit.report import run_report          # doctest: +SKIP
>>> run_report("overview", data="data/sample", out="reports")  # doctest: +SKIP
"""

from __future__ import annotations

from forecastkit.report.html import external_scripts, notebook_to_html
from forecastkit.report.runner import (
    REPORTS,
    ReportResult,
    list_reports,
    notebook_path,
    notebooks_dir,
    report_parameters,
    run_all,
    run_report,
    validate_parameters,
)

__all__ = [
    "REPORTS",
    "ReportResult",
    "external_scripts",
    "list_reports",
    "notebook_path",
    "notebook_to_html",
    "notebooks_dir",
    "report_parameters",
    "run_all",
    "run_report",
    "validate_parameters",
]
