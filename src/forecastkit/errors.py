"""Errors and warnings raised by forecastkit.

Every error a user can meet is a subclass of :class:`ForecastkitError`, so a
scheduled job can catch one class. Messages say what is wrong, where (file,
column, a few example rows) and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "ForecastkitError",
    "SchemaError",
    "DataError",
    "PlaybookError",
    "PeriodError",
    "ParameterError",
    "ReportError",
    "InsufficientDataError",
    "LeakageError",
    "ForecastkitWarning",
    "DataQualityWarning",
    "FallbackWarning",
]


class ForecastkitError(Exception):
    """Base class of every error forecastkit raises on purpose."""


class SchemaError(ForecastkitError):
    """A table is missing, lacks a required column, or cannot be read."""


class DataError(ForecastkitError):
    """Rows break a rule of the canonical tables (raised with ``strict=True``)."""


class PlaybookError(ForecastkitError):
    """The playbook (YAML or dict) has a bad key or value."""


class PeriodError(ForecastkitError):
    """A period string or date cannot be understood, or lies outside the data."""


class ParameterError(ForecastkitError):
    """A function or report received a parameter it does not accept."""


class ReportError(ForecastkitError):
    """A report notebook failed to run or could not be written."""


class InsufficientDataError(ForecastkitError):
    """There is too little data for an estimate to mean anything."""


class LeakageError(ForecastkitError):
    """A feature that is only known once a deal closes was asked for."""


class ForecastkitWarning(UserWarning):
    """Base class of forecastkit's warnings."""


class DataQualityWarning(ForecastkitWarning):
    """Input rows were rejected or look suspicious."""


class FallbackWarning(ForecastkitWarning):
    """An estimate fell back to a simpler method; the message says which."""
