"""CRM hygiene and the pipeline review: each check is a list of actions.

>>> import forecastkit as fk
>>> fk.hygiene.review(crm, owner="Alice Martin")  # doctest: +SKIP

Checks (every date compared with ``crm.as_of_date``, every threshold from ``crm.playbook``):
:func:`aging`, :func:`missing_fields`, :func:`next_steps`, :func:`wip`,
:func:`cadence`, :func:`visit_reports`, :func:`completeness`; assembled by
:func:`review` (the action list), :func:`scorecard` (per-owner numbers with
traffic lights) and :func:`kanban` (cards with flags; :func:`plot_kanban`,
:func:`kanban_html`, :func:`plot_scorecard` draw them).
"""

from forecastkit.hygiene.aging import aging
from forecastkit.hygiene.cadence import CadenceReport, cadence
from forecastkit.hygiene.completeness import CompletenessReport, completeness, contact_problems
from forecastkit.hygiene.fields import missing_fields, next_steps
from forecastkit.hygiene.plot import kanban, kanban_html, plot_kanban, plot_scorecard
from forecastkit.hygiene.review import review
from forecastkit.hygiene.scorecard import scorecard
from forecastkit.hygiene.visits import visit_reports
from forecastkit.hygiene.wip import WipReport, wip

__all__ = [
    "CadenceReport",
    "CompletenessReport",
    "WipReport",
    "aging",
    "cadence",
    "completeness",
    "contact_problems",
    "kanban",
    "kanban_html",
    "missing_fields",
    "next_steps",
    "plot_kanban",
    "plot_scorecard",
    "review",
    "scorecard",
    "visit_reports",
    "wip",
]
