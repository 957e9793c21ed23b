"""forecastkit: honest B2B sales forecasts and coaching material from a CRM export.

>>> import forecastkit as fk
>>> crm = fk.load("data/sample")            # doctest: +SKIP
>>> crm.as_of("2025-06-30").open_deals      # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from forecastkit import errors, periods
from forecastkit.data import CRM, LoadReport, load
from forecastkit.errors import ForecastkitError
from forecastkit.periods import Period, parse_period
from forecastkit.playbook import Playbook

try:
    __version__ = version("forecastkit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "CRM",
    "ForecastkitError",
    "LoadReport",
    "Period",
    "Playbook",
    "__version__",
    "errors",
    "load",
    "parse_period",
    "periods",
    "sample",
]


def __getattr__(name: str):  # lazy: the generator and reports import heavier modules
    if name == "sample":
        from forecastkit.data import sample

        return sample
    raise AttributeError(f"module 'forecastkit' has no attribute {name!r}")
