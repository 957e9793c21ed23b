"""The four dashboards of a B2B CRM (domain section 9), as KPI tiles.

Each dashboard has at most seven :class:`Tile` objects: a value, its target (when
there is one), a green / orange / red status from the playbook's traffic lights, a
sparkline (the same value over the previous periods) and the drill-down action list
behind it (the deals, orders, customers or visits to act on).

1. ``sales_activity`` - invoiced revenue, ordered amount and number of orders
   against targets, margin after discounts, average basket, weighted pipeline and
   bookings against quota;
2. ``organisation`` - the rep's assistant: late visits, quotes to follow up, late and
   due deliveries, delivered but not invoiced orders, overdue calls/e-mails/meetings,
   active deals against the WIP limit;
3. ``data_health`` - contact completeness, data-quality index, new prospects, inactive
   and lost customers, customer churn;
4. ``field_dynamics`` - visit reports, visit-to-order ratio, action-plan progress,
   qualified leads.

Conventions
-----------
* ``level`` is ``rep`` (column ``owner``), ``team`` or ``business_unit``; ``who`` one
  member of that level, or ``None`` for the whole company. Orders, activities and
  accounts are credited to their ``owner``; teams and business units come from ``reps``.
* ``period`` (default: the fiscal quarter holding the snapshot date) sets the flow
  figures; snapshot figures (late visits, open quotes...) are at the snapshot date.
* Targets against a period not over yet are prorated by elapsed days for the status
  (``attainment = value / (target x elapsed share)``); the tile shows the full target.
* Traffic lights come from ``playbook.traffic_lights`` (override any of them in the
  playbook YAML). Informational tiles are ``grey``.
* Forecast accuracy is not a tile here: it belongs to
  :func:`forecastkit.forecast.accuracy.forecast_accuracy`.
"""

from __future__ import annotations

from forecastkit.data.crm import CRM
from forecastkit.kpi.dashboards._base import (
    _ALL,
    DASHBOARDS,
    LEVELS,
    Dashboard,
    Level,
    Tile,
    Which,
    _assemble,
    _Ctx,
    _resolve,
    _scope,
)
from forecastkit.kpi.dashboards.data_health import _data_health
from forecastkit.kpi.dashboards.field_dynamics import _field_dynamics
from forecastkit.kpi.dashboards.organisation import _organisation
from forecastkit.kpi.dashboards.sales_activity import _sales_activity
from forecastkit.periods import Period

__all__ = ["Tile", "Dashboard", "dashboard", "dashboards", "DASHBOARDS", "LEVELS"]

_BUILDERS = {
    "sales_activity": _sales_activity,
    "organisation": _organisation,
    "data_health": _data_health,
    "field_dynamics": _field_dynamics,
}


def dashboard(
    crm: CRM,
    which: Which = "sales_activity",
    level: Level = "rep",
    who: str | None = None,
    period: str | Period | None = None,
    *,
    history: int = 6,
) -> Dashboard:
    """One dashboard for one rep, team or business unit (``who``), or the company (``who=None``).

    Parameters
    ----------
    crm : CRM
    which : {"sales_activity", "organisation", "data_health", "field_dynamics"}
    level : {"rep", "team", "business_unit"}
    who : str, optional
        The rep's name, the team or the business unit; ``None`` = everyone together.
    period : str or Period, optional
        The period of the flow figures (``"2026-Q4"``, ``"2026-11"``...) or a frequency
        (the period of that frequency holding the snapshot date); default: the current quarter.
    history : int
        Number of periods in each sparkline (the current one included).

    Returns
    -------
    Dashboard
        Its ``tiles`` (at most seven :class:`Tile`), ``to_frame()`` for a table.
    """
    p = _resolve(crm, which, level, period)
    if who is None:
        c = _Ctx(crm, "company", p, history)
        label = _ALL
    else:
        c = _Ctx(_scope(crm, level, str(who)), level, p, history, full=crm)
        label = str(who)
    specs, _ = _BUILDERS[which](c)
    tiles = _assemble(c, specs, [label])[0]
    return Dashboard(
        name=which,
        title=DASHBOARDS[which],
        level=level if who is not None else "company",
        who=label,
        period=p.label,
        as_of=crm.as_of_date,
        tiles=tuple(tiles),
    )


def dashboards(
    crm: CRM,
    which: Which = "sales_activity",
    level: Level = "rep",
    period: str | Period | None = None,
    *,
    history: int = 6,
) -> dict[str, Dashboard]:
    """The dashboard of every member of ``level`` at once (computed in one pass; same tiles as :func:`dashboard`).

    Returns
    -------
    dict
        Member name -> :class:`Dashboard`, sorted by name.
    """
    p = _resolve(crm, which, level, period)
    c = _Ctx(crm, level, p, history)
    specs, members = _BUILDERS[which](c)
    members = sorted(str(m) for m in members if m is not None and m == m and m != "(none)")
    if not members:  # nobody at this level in the snapshot (no deal yet, an empty export)
        return {}
    tiles = _assemble(c, specs, members)
    return {
        m: Dashboard(
            name=which,
            title=DASHBOARDS[which],
            level=level,
            who=m,
            period=p.label,
            as_of=crm.as_of_date,
            tiles=tuple(t),
        )
        for m, t in zip(members, tiles, strict=True)
    }
