"""Small helpers for code that runs inside notebooks."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["find_data", "REPORT_TABLES"]

#: Report -> the canonical tables its notebook reads (``forecastkit.load(data, tables=...)``); reports
#: not listed read every table. Each list is checked by running the report on a company loaded with
#: only those tables (tests/test_load_tables.py), and the report's numbers are those of a full load.
#:
#: * ``forecast``: the deals, their history and field history (stage timing, qualification,
#:   rewinding for the backtest), activities (the model's features), targets (quota), reps
#:   (teams) and forecast calls (the reps' calls and their accuracy).
#: * ``probabilities``: the deals, history (stage rates and ages), field history and
#:   activities (the win model's features).
REPORT_TABLES: dict[str, tuple[str, ...]] = {
    "forecast": (
        "opportunities",
        "history",
        "field_history",
        "activities",
        "targets",
        "reps",
        "forecast_calls",
    ),
    "probabilities": ("opportunities", "history", "field_history", "activities"),
}


def find_data(data: str | os.PathLike[str], *, levels: int = 3) -> str:
    """Resolve a data folder the same way from the repository root and from ``notebooks/``.

    A notebook opened in JupyterLab runs in ``notebooks/``, the report runner
    and ``pytest --nbval-lax`` run it elsewhere; a default such as
    ``"data/sample"`` should work from all of them.

    Parameters
    ----------
    data : str or path
        A folder (absolute, or relative to the current directory or one of its
        parents) or a database URL (returned unchanged).
    levels : int, default 3
        How many parent folders to try.

    Returns
    -------
    str
        The absolute path of the first existing match, or ``data`` unchanged
        when nothing matches (loading it then raises a clear error).
    """
    text = os.fspath(data)
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if path.is_absolute():
        return str(path)
    here = Path.cwd()
    for folder in [here, *here.parents][: levels + 1]:
        if (folder / path).exists():
            return str((folder / path).resolve())
    return text
