"""The data layer: canonical tables, validation, the CRM snapshot, loading and the sample company."""

from forecastkit.data.crm import CRM
from forecastkit.data.io import load, save
from forecastkit.data.schema import TABLES
from forecastkit.data.validate import LoadReport

__all__ = ["CRM", "LoadReport", "TABLES", "load", "save"]
