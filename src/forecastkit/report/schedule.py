"""Helpers for scheduled report runs: ``--as-of today`` and the publish lock.

``today``
    A scheduled job says "as of today" (``forecastkit report forecast --as-of
    today --dated``). forecastkit resolves it **once, at the start of the run,
    to the snapshot date of the data** -- ``as_of`` in the export's
    ``crm.yaml``, else the date of its latest event -- and never to the
    computer's clock: an export taken last night is reported as of the date
    it was taken, so the dated file names say which data a report shows, a
    late or re-run job gives the same report, and a stale export is not
    silently relabelled as today. Every report of a ``report all`` run gets
    the same date even when the export is replaced while it runs. (Library
    functions never read the clock; the command line only reads it to warn
    when the export is older than ``--max-age-days``.)

Publish lock
    A report is published as a set of files (``<name>.html``, ``<name>.ipynb``,
    the dated copy). Each file is written atomically (a temp file, then
    :func:`os.replace`), and the whole set is replaced while holding an
    exclusive lock on the output folder (``flock``), so two runs at once never
    mix one run's page with the other's notebook; the last run to finish wins.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from forecastkit.errors import ParameterError, ReportError

__all__ = ["TODAY", "is_today", "snapshot_date", "resolve_as_of", "publish_lock"]

#: The ``as_of`` value that means "the snapshot date of the data".
TODAY = "today"
_RELATIVE = {"now", "yesterday", "tomorrow"}


def is_today(as_of: Any) -> bool:
    """True when ``as_of`` is the string ``"today"`` (any case, surrounding spaces ignored)."""
    return isinstance(as_of, str) and as_of.strip().lower() == TODAY


def snapshot_date(data: str | os.PathLike[str]) -> str:
    """The snapshot date of an export, as ``YYYY-MM-DD``.

    Reads ``as_of`` from the folder's ``crm.yaml`` when it has one (instant);
    otherwise loads the export and takes its snapshot date (the latest event).

    Parameters
    ----------
    data : str or path
        An export folder (or anything :func:`forecastkit.load` accepts).

    Returns
    -------
    str
        The date, e.g. ``"2026-11-20"``.

    Raises
    ------
    SchemaError
        The export cannot be read or holds no dated event.
    """
    import forecastkit
    from forecastkit.data.io import _read_meta

    folder = Path(os.fspath(data))
    if folder.is_dir():
        meta = _read_meta(folder)
        if meta.get("as_of") is not None:
            return meta["as_of"].date().isoformat()
    return forecastkit.load(os.fspath(data)).as_of_date.date().isoformat()


def resolve_as_of(as_of: Any, data: str | os.PathLike[str]) -> str | None:
    """Resolve ``"today"`` to the data's snapshot date; check and normalise any other date.

    Parameters
    ----------
    as_of : date-like, "today" or None
    data : str or path
        The export the report reads.

    Returns
    -------
    str or None
        ``YYYY-MM-DD``, or None when ``as_of`` is None.

    Raises
    ------
    ParameterError
        ``as_of`` is not a date (relative words other than ``today``, such as
        ``now`` or ``yesterday``, are refused: they would depend on the clock).
    """
    if as_of is None:
        return None
    if is_today(as_of):
        return snapshot_date(data)
    if isinstance(as_of, str) and as_of.strip().lower() in _RELATIVE:
        raise ParameterError(
            f"as_of {as_of!r} is not supported; give a date (YYYY-MM-DD) or 'today' for the snapshot date of the data"
        )
    import pandas as pd

    try:
        ts = pd.Timestamp(as_of)
    except (ValueError, TypeError, OverflowError):
        ts = None
    if ts is None or ts is pd.NaT:
        raise ParameterError(f"as_of {as_of!r} is not a date; use YYYY-MM-DD, e.g. 2026-06-30, or 'today'")
    return ts.date().isoformat()


@contextlib.contextmanager
def publish_lock(folder: str | os.PathLike[str], name: str = "") -> Iterator[Path]:
    """Hold an exclusive lock on the output folder while publishing a report into it.

    Blocks until another process publishing into the same folder is done
    (publishing is a few file renames, so the wait is short). On POSIX the
    lock is a ``flock`` on the folder itself, so no lock file is left behind;
    elsewhere it is a lock file ``<folder>/.<name>.lock``.

    Parameters
    ----------
    folder : path
        The output folder (must exist).
    name : str
        The report name (used for the lock file where folders cannot be locked).

    Yields
    ------
    Path
        What is locked.

    Raises
    ------
    ReportError
        The folder cannot be opened for locking.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: a lock file
        fcntl = None
    if fcntl is not None:
        path = Path(folder)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise ReportError(f"cannot lock the output folder {path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield path
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return
    import msvcrt  # pragma: no cover

    path = Path(folder) / f".{name or 'forecastkit'}.lock"  # pragma: no cover
    with open(path, "a+b") as handle:  # pragma: no cover
        while True:
            try:
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
                break
            except OSError:
                time.sleep(0.05)
        try:
            yield path
        finally:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
