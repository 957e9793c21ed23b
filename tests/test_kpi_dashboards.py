"""The four dashboards on a hand-built CRM (snapshot 2026-06-30, period 2026-Q2), values worked out by hand.

On top of the six deals of ``test_kpi_sales``:

* orders - R1 A1 alice 04-10 1000 (margin 400, invoiced 04-15, delivered 04-18);
  R2 A1 alice 05-10 500 (margin 100, discount 20%, not invoiced, promised 05-20, not delivered);
  R3 A2 bob 06-01 2000 (margin 800, invoiced 06-05, promised 07-05); R4 A2 bob 01-15 300 (Q1).
* activities - V1 visit alice due 06-20 not done; V2 visit alice done 05-05 with a report;
  V3 visit alice done 06-02 without report; C1 call bob due 06-25 not done; C2 e-mail alice due 07-05.
* targets 2026-Q2 for alice: invoiced 2000, ordered 3000, orders 4, bookings 1000.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from test_kpi_sales import AS_OF, make_tables

from forecastkit.data.crm import CRM
from forecastkit.errors import ParameterError
from forecastkit.kpi.cycle import cycle_survival
from forecastkit.kpi.dashboards import DASHBOARDS, Dashboard, dashboard, dashboards
from forecastkit.kpi.plot import plot_customer_status, plot_cycle_survival, plot_dashboard, plot_sparkline

# two customers are too few for BG/NBD: p_alive is left empty with a FallbackWarning (tested in test_kpi_customers)
pytestmark = pytest.mark.filterwarnings("ignore:customer_activity. BG/NBD could not be fitted")


def _tables() -> dict[str, pd.DataFrame]:
    t = make_tables(
        [
            ("alice", None, "2026-Q2", m, a)
            for m, a in (("invoiced", 2000), ("ordered", 3000), ("orders", 4), ("bookings", 1000))
        ]
    )
    t["orders"] = pd.DataFrame(
        [
            ("R1", "A1", "alice", "2026-04-10", 1000, 400, 0.0, "2026-04-15", 1000, "2026-04-20", "2026-04-18"),
            ("R2", "A1", "alice", "2026-05-10", 500, 100, 0.2, None, None, "2026-05-20", None),
            ("R3", "A2", "bob", "2026-06-01", 2000, 800, 0.0, "2026-06-05", 2000, "2026-07-05", None),
            ("R4", "A2", "bob", "2026-01-15", 300, 120, 0.0, "2026-01-20", 300, "2026-01-25", "2026-01-25"),
        ],
        columns=[
            "order_id",
            "account_id",
            "owner",
            "ordered_at",
            "amount",
            "margin",
            "discount",
            "invoiced_at",
            "invoiced_amount",
            "promised_delivery",
            "delivered_at",
        ],
    )
    t["activities"] = pd.DataFrame(
        [
            ("V1", "A1", "alice", "visit", "2026-06-20", None, None),
            ("V2", "A1", "alice", "visit", "2026-05-05", "2026-05-05", "met the CFO"),
            ("V3", "A1", "alice", "visit", "2026-06-02", "2026-06-02", None),
            ("C1", "A2", "bob", "call", "2026-06-25", None, None),
            ("C2", "A1", "alice", "email", "2026-07-05", None, None),
        ],
        columns=["activity_id", "account_id", "owner", "type", "due_at", "done_at", "report"],
    )
    t["accounts"] = pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "name": ["Acme", "Globex"],
            "owner": ["alice", "bob"],
            "created_at": ["2026-04-01", "2025-01-01"],
        }
    )
    t["contacts"] = pd.DataFrame(
        {
            "contact_id": ["K1", "K2"],
            "account_id": ["A1", "A2"],
            "name": ["Jane", "John"],
            "job_title": ["CFO", None],
            "department": ["Finance", None],
            "email": ["jane@acme.test", None],
            "phone": ["+33612345678", None],
        }
    )
    t["reps"] = pd.DataFrame({"owner": ["alice", "bob"], "team": ["north", "south"], "business_unit": ["bu1", "bu1"]})
    return t


@pytest.fixture(scope="module")
def crm() -> CRM:
    return CRM.from_tables(_tables(), as_of=AS_OF)


def _values(d: Dashboard) -> dict[str, tuple]:
    return {t.key: (t.value, t.target, t.status) for t in d.tiles}


def test_sales_activity_for_alice(crm: CRM) -> None:
    d = dashboard(crm, "sales_activity", "rep", "alice", "2026-Q2")
    v = _values(d)
    assert v["invoiced"] == (1000, 2000, "red")  # 1000 / 2000, period over: attainment 0.5
    assert v["ordered"] == (1500, 3000, "red")
    assert v["orders"] == (2, 4, "red")
    assert v["margin_rate"][0] == pytest.approx(500 / 1500) and v["margin_rate"][2] == "orange"  # 0.25 <= 0.33 < 0.35
    assert v["average_basket"][0] == 750 and v["average_basket"][2] == "grey"  # no earlier basket: no trend
    assert v["weighted_pipeline"][0] == 0  # alice's only open deal closes in Q3
    assert v["bookings"] == (0, 1000, "red")
    assert d.tile("invoiced").drilldown["order_id"].tolist() == ["R2"]  # ordered, not invoiced
    assert d.tile("margin_rate").drilldown["order_id"].tolist() == ["R2"]  # 20% discount, margin 20%
    assert d.tile("invoiced").sparkline.index[-1] == "2026-Q2"
    assert len(d.tile("invoiced").sparkline) == 6
    assert d.tile("ordered").drilldown["account_id"].tolist() == ["A1"]  # inactive: 51 days > 1.5 x 30
    assert len(d.tiles) <= 7


def test_organisation(crm: CRM) -> None:
    a = _values(dashboard(crm, "organisation", "rep", "alice", "2026-Q2"))
    b = _values(dashboard(crm, "organisation", "rep", "bob", "2026-Q2"))
    assert a["late_visits"][:1] == (1,) and a["late_visits"][2] == "orange"  # 0 < 1 <= 3
    assert a["late_deliveries"][0] == 1 and b["late_deliveries"][0] == 0
    assert b["deliveries_due"][0] == 1 and b["deliveries_due"][2] == "grey"  # R3 promised 07-05
    assert a["overdue_actions"][0] == 0 and b["overdue_actions"][0] == 1  # C2 is not due yet
    assert b["quotes_to_follow_up"][0] == 1  # D4 in proposal, no dated next step
    assert a["wip"] == (1, 25, "green") and b["wip"][0] == 1
    assert a["uninvoiced_deliveries"][0] == 0


def test_field_dynamics(crm: CRM) -> None:
    d = dashboard(crm, "field_dynamics", "rep", "alice", "2026-Q2")
    v = _values(d)
    assert v["visit_reports"][0] == 1 and v["visit_reports"][2] == "red"  # 1 report of 2 visits done
    assert d.tile("visit_reports").status_value == 0.5
    assert v["visit_to_order"][0] == 1.0  # 2 orders / 2 visits
    assert v["action_plan_progress"][0] == pytest.approx(2 / 3)  # V2 and V3 done, V1 not; C2 not due
    assert v["qualified_leads"][0] == 1  # D5 created in qualification on 05-01
    assert d.tile("visit_reports").drilldown["activity_id"].tolist() == ["V3"]


def test_data_health(crm: CRM) -> None:
    d = dashboard(crm, "data_health", "rep", "alice", "2026-Q2")
    v = _values(d)
    assert v["contact_completeness"][0] == 1.0  # Jane: every field filled
    assert v["new_prospects"][0] == 1  # A1 created 04-01
    assert v["inactive_customers"][0] == 1 and v["inactive_customers"][2] == "red"  # 1 of 1 repeat buyer
    assert v["lost_customers"][0] == 0
    assert d.tile("inactive_customers").drilldown["account_id"].tolist() == ["A1"]
    bob = _values(dashboard(crm, "data_health", "rep", "bob", "2026-Q2"))
    assert bob["contact_completeness"][0] == pytest.approx(1 / 5)  # John: only his name of the five fields


def test_all_members_match_single_calls(crm: CRM) -> None:
    for which in DASHBOARDS:
        every = dashboards(crm, which, "rep", "2026-Q2")
        assert sorted(every) == ["alice", "bob"]
        for who, d in every.items():
            one = dashboard(crm, which, "rep", who, "2026-Q2")
            a, b = d.to_frame(), one.to_frame()
            pd.testing.assert_frame_equal(a, b, check_dtype=False)
            assert len(d.tiles) <= 7


def test_group_codes_follow_the_level_and_the_row_labels(crm: CRM) -> None:
    """Rows are grouped by integer codes cached per snapshot and level, found by row label in any index."""
    rep = dashboards(crm, "organisation", "rep", "2026-Q2")
    team = dashboards(crm, "organisation", "team", "2026-Q2")  # after the rep codes: no mix-up
    assert sorted(team) == ["north", "south"]
    assert team["north"].tile("wip").value == rep["alice"].tile("wip").value == 1
    assert team["south"].tile("overdue_actions").value == rep["bob"].tile("overdue_actions").value == 1
    relabelled = {n: df.set_axis(np.arange(len(df)) * 10 + 7) for n, df in crm.tables.items() if crm.has(n)}
    other = CRM(relabelled, as_of_date=crm.as_of_date, playbook=crm.playbook, load_report=crm.load_report)
    for which in DASHBOARDS:
        mine, theirs = dashboards(other, which, "rep", "2026-Q2"), dashboards(crm, which, "rep", "2026-Q2")
        assert list(mine) == list(theirs)
        for who, d in mine.items():
            pd.testing.assert_frame_equal(d.to_frame(), theirs[who].to_frame())
            for t, u in zip(d.tiles, theirs[who].tiles, strict=True):
                pd.testing.assert_frame_equal(t.drilldown, u.drilldown)


def test_team_and_company_levels(crm: CRM) -> None:
    t = dashboard(crm, "sales_activity", "team", "north", "2026-Q2")
    assert t.tile("ordered").value == 1500
    c = dashboard(crm, "sales_activity", period="2026-Q2")
    assert c.who == "all" and c.level == "company"
    assert c.tile("ordered").value == 3500
    assert c.tile("invoiced").target == 2000  # the sum of every rep's target
    bu = dashboards(crm, "organisation", "business_unit", "2026-Q2")
    assert list(bu) == ["bu1"] and bu["bu1"].tile("wip").target == 50  # two reps x 25


def test_default_period_is_current_quarter(crm: CRM) -> None:
    assert dashboard(crm, "field_dynamics", "rep", "alice").period == "2026-Q2"
    assert dashboard(crm, "field_dynamics", "rep", "alice", period="month").period == "2026-06"


def test_errors(crm: CRM) -> None:
    with pytest.raises(ParameterError, match="which='sales' is not a dashboard; use one of sales_activity"):
        dashboard(crm, "sales")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="level='region': use one of rep, team, business_unit"):
        dashboard(crm, "sales_activity", "region")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="who='carol' is not a rep of this CRM; known: alice, bob"):
        dashboard(crm, "sales_activity", "rep", "carol")
    d = dashboard(crm, "sales_activity", "rep", "alice")
    with pytest.raises(ParameterError, match="has no tile 'x'"):
        d.tile("x")


def test_playbook_lights_override_defaults() -> None:
    from forecastkit.playbook import Playbook

    pb = Playbook.from_dict({"traffic_lights": {"margin_rate": {"green": 0.30, "orange": 0.20}}})
    crm = CRM.from_tables(_tables(), as_of=AS_OF, playbook=pb)
    d = dashboard(crm, "sales_activity", "rep", "alice", "2026-Q2")
    assert d.tile("margin_rate").status == "green"  # 0.33 >= 0.30


def test_plots_return_figures(crm: CRM) -> None:
    d = dashboard(crm, "sales_activity", "rep", "alice", "2026-Q2")
    assert isinstance(plot_dashboard(d), go.Figure)
    assert isinstance(plot_sparkline(d.tiles[0]), go.Figure)
    assert isinstance(plot_cycle_survival(cycle_survival(crm)), go.Figure)
    from forecastkit.kpi.customers import customer_activity

    act = customer_activity(crm)
    fig = plot_customer_status(act)
    assert isinstance(fig, go.Figure) and np.sum(fig.data[0].y) == 2
    assert "<b>Steering sales activity</b>" in d._repr_html_()
