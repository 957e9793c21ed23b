"""Fast comparisons of text columns with one value (status, stage...), same result as pandas.

``series == "won"`` on pandas' ``string`` dtype scans the column for missing values at
every comparison; on a million deals the scan costs about five times the comparison
itself, and the forecast and its backtest compare ``status`` several times per snapshot.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["text_is"]


def text_is(col: pd.Series, value: str) -> np.ndarray:
    """``(col == value)`` as a numpy bool array, missing cells False.

    The same as ``(col == value).to_numpy(dtype=bool, na_value=False)``. A text column
    stored as Python objects (``string[python]`` or ``object``) is compared as the numpy
    object array it holds (no copy); a column holding ``pd.NA`` (numpy refuses to compare
    it) or stored otherwise goes through pandas.
    """
    dtype = col.dtype
    if (isinstance(dtype, np.dtype) and dtype.kind == "O") or (
        isinstance(dtype, pd.StringDtype) and dtype.storage == "python"
    ):
        values = np.asarray(col.array, dtype=object)
        try:
            out = values == value
        except TypeError:  # pd.NA == value is NA, whose truth value numpy asks for
            out = None
        if isinstance(out, np.ndarray) and out.dtype == bool and out.shape == values.shape:
            return out
    return (col == value).to_numpy(dtype=bool, na_value=False)
