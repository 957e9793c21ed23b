"""Diagnosis of the three case patterns: wide pipeline / low conversion, long cycle, optimistic forecast."""

from forecastkit.diagnosis.cases import diagnose, diagnose_scope
from forecastkit.diagnosis.findings import ACTIONS, CASES, Diagnosis, Finding

__all__ = ["ACTIONS", "CASES", "Diagnosis", "Finding", "diagnose", "diagnose_scope"]
