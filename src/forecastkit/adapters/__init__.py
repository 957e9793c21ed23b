"""Adapters: real CRM exports and databases -> the canonical tables and a CRM snapshot.

* :mod:`~forecastkit.adapters.salesforce` - API exports (``load``) and report exports (``load_report_export``)
* :mod:`~forecastkit.adapters.hubspot` - deals exports (API properties or UI labels)
* :mod:`~forecastkit.adapters.pipedrive` - deals exports (API fields or UI headers)
* :mod:`~forecastkit.adapters.mapping` - any CSV through a YAML mapping file (``load``, ``validate_export``)
* :mod:`~forecastkit.adapters.sql` - DuckDB files and SQLAlchemy URLs (``load``, ``save``)

Every adapter builds its snapshot through :meth:`forecastkit.CRM.from_tables`, so the
validation and row accounting (``crm.load_report``) are the same for every source.
"""

import importlib

__all__ = ["hubspot", "mapping", "pipedrive", "salesforce", "sql"]


def __getattr__(name: str):  # submodules on first use
    if name in __all__:
        return importlib.import_module(f"forecastkit.adapters.{name}")
    raise AttributeError(f"module 'forecastkit.adapters' has no attribute {name!r}")
