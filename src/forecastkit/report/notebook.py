"""Small helpers for code that runs inside notebooks."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["find_data"]


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
