"""Sales KPIs on a six-deal hand-built CRM whose every answer is worked out below.

Deals (snapshot 2026-06-30; history in brackets):

=====  =====  =====  ==========  ===============================  ======  ==========
deal   owner  team   created     stages                            amount  closed
=====  =====  =====  ==========  ===============================  ======  ==========
D1     alice  north  2026-01-01  qualification > proposal > won       100  2026-02-01
D2     alice  north  2026-01-10  to_contact > discovery > lost        200  2026-03-01
D3     bob    south  2026-02-01  discovery > negotiation > won        300  2026-04-10
D4     bob    south  2026-03-01  qualification > proposal (open)     400  -
D5     alice  north  2026-05-01  qualification (open)                500  -
D6     bob    south  2026-04-01  to_contact > lost                     50  2026-05-01
=====  =====  =====  ==========  ===============================  ======  ==========
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecastkit.data.crm import CRM
from forecastkit.errors import FallbackWarning, ParameterError, PeriodError
from forecastkit.kpi.sales import (
    conversion,
    deal_size,
    historical_stage_win_rates,
    new_pipeline,
    pipeline_coverage,
    velocity,
    weighted_pipeline,
    win_probabilities,
    win_rate,
)

AS_OF = "2026-06-30"

_DEALS = [
    # id, owner, team, created, stage, status, closed_at, close_date, amount
    ("D1", "alice", "north", "2026-01-01", "won", "won", "2026-02-01", "2026-02-01", 100),
    ("D2", "alice", "north", "2026-01-10", "lost", "lost", "2026-03-01", "2026-03-01", 200),
    ("D3", "bob", "south", "2026-02-01", "won", "won", "2026-04-10", "2026-04-10", 300),
    ("D4", "bob", "south", "2026-03-01", "proposal", "open", None, "2026-08-15", 400),
    ("D5", "alice", "north", "2026-05-01", "qualification", "open", None, "2026-07-20", 500),
    ("D6", "bob", "south", "2026-04-01", "lost", "lost", "2026-05-01", "2026-05-01", 50),
]
_HISTORY = [
    ("D1", "2026-01-01", "qualification"),
    ("D1", "2026-01-15", "proposal"),
    ("D1", "2026-02-01", "won"),
    ("D2", "2026-01-10", "to_contact"),
    ("D2", "2026-02-01", "discovery"),
    ("D2", "2026-03-01", "lost"),
    ("D3", "2026-02-01", "discovery"),
    ("D3", "2026-03-01", "negotiation"),
    ("D3", "2026-04-10", "won"),
    ("D4", "2026-03-01", "qualification"),
    ("D4", "2026-04-01", "proposal"),
    ("D5", "2026-05-01", "qualification"),
    ("D6", "2026-04-01", "to_contact"),
    ("D6", "2026-05-01", "lost"),
]


def make_tables(targets: list[tuple] | None = None) -> dict[str, pd.DataFrame]:
    """The six-deal CRM as raw tables (optionally with bookings targets)."""
    opp = pd.DataFrame(
        _DEALS,
        columns=[
            "opportunity_id",
            "owner",
            "team",
            "created_at",
            "stage",
            "status",
            "closed_at",
            "close_date",
            "amount",
        ],
    )
    amount = opp.set_index("opportunity_id")["amount"]
    close = opp.set_index("opportunity_id")["close_date"]
    hist = pd.DataFrame(_HISTORY, columns=["opportunity_id", "changed_at", "stage"])
    hist["amount"] = hist["opportunity_id"].map(amount)
    hist["close_date"] = hist["opportunity_id"].map(close)
    tables = {"opportunities": opp, "history": hist}
    if targets is not None:
        tables["targets"] = pd.DataFrame(targets, columns=["owner", "team", "period", "metric", "amount"])
    return tables


@pytest.fixture
def crm() -> CRM:
    return CRM.from_tables(make_tables(), as_of=AS_OF)


def test_win_rate_company_and_by_owner_quarter(crm: CRM) -> None:
    r = win_rate(crm)
    assert r.loc[0, ["won", "lost", "closed"]].tolist() == [2, 2, 4]
    assert r.loc[0, "win_rate"] == 0.5
    assert r.loc[0, "value_win_rate"] == pytest.approx((100 + 300) / (100 + 200 + 300 + 50))
    # Wilson 95% interval for 2/4: (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
    z, n, p = 1.959964, 4, 0.5
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    assert r.loc[0, "win_rate_low"] == pytest.approx(0.5 - half, abs=1e-5)
    q = win_rate(crm, period="quarter", by="owner")
    assert q[["owner", "period", "won", "lost"]].values.tolist() == [
        ["alice", "2026-Q1", 1, 1],
        ["bob", "2026-Q2", 1, 1],
    ]


def test_win_rate_one_period_and_team_from_deals(crm: CRM) -> None:
    r = win_rate(crm, period="2026-Q2", by="team")
    assert r[["team", "period", "won", "lost", "win_rate"]].values.tolist() == [["south", "2026-Q2", 1, 1, 0.5]]


def test_deal_size(crm: CRM) -> None:
    r = deal_size(crm)
    assert r.loc[0, ["won_deals", "won_amount", "avg_deal_size", "median_deal_size"]].tolist() == [2, 400, 200, 200]


def test_velocity_all_history(crm: CRM) -> None:
    # 2 open deals (D4, D5) x win rate 2/4 x avg won 200 / mean won cycle ((31 + 68) / 2 days)
    r = velocity(crm)
    assert r.loc[0, "opportunities"] == 2
    assert r.loc[0, "cycle_days"] == pytest.approx(49.5)
    assert r.loc[0, "velocity_per_day"] == pytest.approx(2 * 0.5 * 200 / 49.5)


def test_velocity_per_quarter_counts_deals_open_at_period_end(crm: CRM) -> None:
    r = velocity(crm, period="2026-Q1")
    # closed in Q1: D1 won (cycle 31), D2 lost; open on 2026-03-31: D3 and D4
    assert r.loc[0, ["opportunities", "win_rate", "avg_deal_size", "cycle_days"]].tolist() == [2, 0.5, 100, 31]
    assert r.loc[0, "velocity_per_day"] == pytest.approx(2 * 0.5 * 100 / 31)


def test_conversion_by_stage(crm: CRM) -> None:
    r = conversion(crm).set_index("stage")
    # reached: to_contact D2 D6; qualification D1 D2 D4 D5 (D2 passed it); discovery D1 D2 D3 D4;
    # proposal D1 D3 D4; negotiation D1 D3. D5 is undecided in qualification, D4 in proposal.
    assert r["reached"].tolist() == [2, 4, 4, 3, 2]
    assert r["advanced"].tolist() == [1, 3, 3, 2, 2]
    assert r["undecided"].tolist() == [0, 1, 0, 1, 0]
    assert r["conversion_next"].tolist() == pytest.approx([1 / 2, 3 / 3, 3 / 4, 2 / 2, 2 / 2])
    assert r["conversion_won"].tolist() == pytest.approx([0 / 2, 1 / 2, 2 / 3, 2 / 2, 2 / 2])


def test_new_pipeline_by_quarter(crm: CRM) -> None:
    r = new_pipeline(crm, period="quarter")
    assert r[["period", "new_deals", "new_amount"]].values.tolist() == [["2026-Q1", 4, 1000], ["2026-Q2", 2, 550]]


def test_historical_stage_win_rates_shrink_toward_crm(crm: CRM) -> None:
    with pytest.warns(FallbackWarning, match="only 4 closed deal"):
        p = historical_stage_win_rates(crm)
    # too few closed deals: stage_probabilities' fallback, (won + 10 x crm probability) / (closed + 10)
    assert p.tolist() == pytest.approx([(0 + 0.5) / 12, (1 + 1) / 12, (2 + 2.5) / 13, (2 + 5) / 12, (2 + 7.5) / 12])


@pytest.mark.filterwarnings("ignore::forecastkit.errors.FallbackWarning")
def test_weighted_pipeline_history_and_crm(crm: CRM) -> None:
    r = weighted_pipeline(crm)
    assert r.loc[0, ["open_deals", "pipeline"]].tolist() == [2, 900]
    assert r.loc[0, "crm_weighted_pipeline"] == pytest.approx(400 * 0.5 + 500 * 0.10)
    assert r.loc[0, "weighted_pipeline"] == pytest.approx(400 * 7 / 12 + 500 * 2 / 12)
    q = weighted_pipeline(crm, period="quarter", by="owner", probabilities="crm")
    assert q[["owner", "period", "weighted_pipeline"]].values.tolist() == [
        ["alice", "2026-Q3", 50.0],
        ["bob", "2026-Q3", 200.0],
    ]


@pytest.mark.filterwarnings("ignore::forecastkit.errors.FallbackWarning")
def test_weighted_pipeline_with_model_probabilities(crm: CRM) -> None:
    probs = pd.DataFrame({"opportunity_id": ["D4"], "p_win": [0.9]})
    r = weighted_pipeline(crm, probabilities=probs)
    assert r.loc[0, "weighted_pipeline"] == pytest.approx(400 * 0.9 + 500 * 2 / 12)  # D5 falls back to history
    with pytest.raises(ParameterError, match="needs columns 'opportunity_id' and 'p_win'"):
        win_probabilities(crm, pd.DataFrame({"id": ["D4"]}))
    with pytest.raises(ParameterError, match="use 'history', 'crm'"):
        weighted_pipeline(crm, probabilities="typed")


def test_pipeline_coverage_owner_team_company() -> None:
    targets = [
        ("alice", None, "2026-Q3", "bookings", 1000),
        ("bob", None, "2026-Q3", "bookings", 600),
        (None, "south", "2026-Q3", "bookings", 1000),  # the team's own target wins over the sum of its reps'
        ("carol", None, "FY2026", "bookings", 3650),  # a yearly target is prorated by days: 92 / 365
    ]
    crm = CRM.from_tables(make_tables(targets), as_of=AS_OF)
    r = pipeline_coverage(crm, "2026-Q3", by="owner").set_index("owner")
    assert r.loc["alice", ["pipeline", "quota", "coverage"]].tolist() == [500, 1000, 0.5]
    assert r.loc["bob", "coverage"] == pytest.approx(400 / 600)
    assert r.loc["carol", "quota"] == pytest.approx(3650 * 92 / 365)
    assert r.loc["carol", "pipeline"] == 0
    t = pipeline_coverage(crm, "2026-Q3", by="team").set_index("team")
    assert t["quota"].to_dict() == {"north": 1000, "south": 1000}
    c = pipeline_coverage(crm, "2026-Q3")
    # company: south's own 1000 + north (alice 1000) + carol (no team: her target still counts)
    assert c.loc[0, "quota"] == pytest.approx(2000 + 920)
    assert c.loc[0, "pipeline"] == 900


def test_pipeline_coverage_remaining_quota_uses_won_to_date() -> None:
    targets = [("bob", None, "2026-Q2", "bookings", 500)]
    crm = CRM.from_tables(make_tables(targets), as_of=AS_OF)
    r = pipeline_coverage(crm, by="owner")  # None = the quarter of the snapshot, 2026-Q2
    row = r.set_index("owner").loc["bob"]
    assert row["period"] == "2026-Q2"
    assert row[["won", "quota", "remaining_quota"]].tolist() == [300, 500, 200]


def test_coverage_by_segment_has_no_quota(crm: CRM) -> None:
    tables = make_tables([("alice", None, "2026-Q3", "bookings", 1000)])
    tables["opportunities"]["segment"] = "smb"
    crm2 = CRM.from_tables(tables, as_of=AS_OF)
    r = pipeline_coverage(crm2, "2026-Q3", by="segment")
    assert r.loc[0, "pipeline"] == 900
    assert np.isnan(r.loc[0, "coverage"])


def test_bad_by_and_period(crm: CRM) -> None:
    with pytest.raises(ParameterError, match=r"\['region'\] cannot be grouped on; use None or any of owner"):
        win_rate(crm, by="region")
    with pytest.raises(ParameterError, match="names a column twice"):
        win_rate(crm, by=["owner", "owner"])
    with pytest.raises(PeriodError, match="is not understood"):
        win_rate(crm, period="next quarter")
    with pytest.raises(ParameterError, match="period=3 is not understood"):
        win_rate(crm, period=3)


@pytest.mark.filterwarnings("ignore::forecastkit.errors.FallbackWarning")
def test_inputs_not_mutated(crm: CRM) -> None:
    before = crm.opportunities.copy()
    for f in (win_rate, deal_size, velocity, conversion, new_pipeline, weighted_pipeline, pipeline_coverage):
        f(crm, by="team")
    pd.testing.assert_frame_equal(crm.opportunities, before)
