"""The CRM snapshot and its point-in-time rewind (as_of)."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecastkit.data.crm import CRM
from forecastkit.data.schema import TABLES
from forecastkit.errors import PeriodError, SchemaError

T0 = pd.Timestamp("2025-01-01")
OPEN = ["to_contact", "qualification", "discovery", "proposal", "negotiation"]


def _day(n: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=n)


@st.composite
def companies(draw: st.DrawFn) -> dict[str, pd.DataFrame]:
    """Small consistent companies: deals with a history path, activities and orders."""
    n = draw(st.integers(1, 6))
    opps, hist, acts, orders, fh = [], [], [], [], []
    for i in range(n):
        oid = f"O{i}"
        created = draw(st.integers(0, 200))
        t, stage_i = created, draw(st.integers(0, 2))
        amount, close = float(draw(st.integers(1, 50)) * 1000), created + draw(st.integers(10, 120))
        steps = [(t, OPEN[stage_i], amount, close)]
        for _ in range(draw(st.integers(0, 5))):
            t += draw(st.integers(0, 40))
            kind = draw(st.sampled_from(["advance", "amount", "push", "lose", "win"]))
            if kind == "advance":
                stage_i = min(stage_i + 1, len(OPEN) - 1)
            elif kind == "amount":
                amount = float(draw(st.integers(1, 50)) * 1000)
            elif kind == "push":
                close += draw(st.integers(1, 60))
            if kind in ("lose", "win"):
                steps.append((t, "lost" if kind == "lose" else "won", amount, max(t, created)))
                break
            steps.append((t, OPEN[stage_i], amount, max(close, created)))
        for s in steps:
            hist.append(
                {
                    "opportunity_id": oid,
                    "changed_at": _day(s[0]),
                    "stage": s[1],
                    "amount": s[2],
                    "close_date": _day(s[3]),
                }
            )
        last = steps[-1]
        closed = last[1] in ("won", "lost")
        opps.append(
            {
                "opportunity_id": oid,
                "owner": f"rep{i % 2}",
                "created_at": _day(created),
                "close_date": _day(last[3]),
                "amount": last[2],
                "stage": last[1],
                "closed_at": _day(last[0]) if closed else pd.NaT,
                "loss_reason": "price" if last[1] == "lost" else None,
                "next_step_date": _day(created + 30),
            }
        )
        fh.append(
            {
                "opportunity_id": oid,
                "changed_at": _day(created + 5),
                "field": "next_step_date",
                "old_value": str(_day(created + 10).date()),
                "new_value": str(_day(created + 30).date()),
            }
        )
        for j in range(draw(st.integers(0, 3))):
            due = created + draw(st.integers(0, 100))
            done = draw(st.one_of(st.none(), st.integers(0, 20)))
            acts.append(
                {
                    "activity_id": f"A{i}-{j}",
                    "opportunity_id": oid,
                    "owner": f"rep{i % 2}",
                    "type": "call",
                    "created_at": _day(created),
                    "due_at": _day(due),
                    "done_at": _day(due + done) if done is not None else pd.NaT,
                }
            )
        if last[1] == "won":
            orders.append(
                {
                    "order_id": f"R{i}",
                    "account_id": f"C{i}",
                    "ordered_at": _day(last[0]),
                    "amount": last[2],
                    "invoiced_at": _day(last[0] + 10),
                    "invoiced_amount": last[2],
                }
            )
    return {
        "opportunities": pd.DataFrame(opps),
        "history": pd.DataFrame(hist),
        "field_history": pd.DataFrame(fh),
        "activities": pd.DataFrame(
            acts, columns=["activity_id", "opportunity_id", "owner", "type", "created_at", "due_at", "done_at"]
        ),
        "orders": pd.DataFrame(
            orders, columns=["order_id", "account_id", "ordered_at", "amount", "invoiced_at", "invoiced_amount"]
        ),
    }


def _snapshot(tables: dict[str, pd.DataFrame]) -> CRM:
    dates = [
        tables["history"]["changed_at"].max(),
        tables["field_history"]["changed_at"].max(),
        tables["activities"]["done_at"].max(),
        tables["orders"]["invoiced_at"].max(),
    ]
    as_of = max(d for d in dates if pd.notna(d))
    return CRM.from_tables(tables, as_of=as_of, strict=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(companies(), st.integers(-5, 400))
def test_as_of_never_shows_the_future(tables: dict[str, pd.DataFrame], offset: int) -> None:
    crm = _snapshot(tables)
    d = min(_day(offset), crm.as_of_date)
    past = crm.as_of(d)
    end = d + pd.Timedelta(days=1)
    assert past.as_of_date == d
    for name, table in TABLES.items():
        df = past.tables[name]
        for col in table.columns:
            if col.kind != "date" or col.name in (
                "close_date",
                "next_step_date",
                "due_at",
                "timing",
                "promised_delivery",
            ):
                continue  # planned dates may lie in the future
            assert not (df[col.name] >= end).any(), f"{name}.{col.name} shows a date after {d.date()}"
    o = past.opportunities
    assert not (o["created_at"] >= end).any()
    # each deal's state is its last history row at or before d
    h = tables["history"]
    h = h[h["changed_at"] < end].sort_values(["opportunity_id", "changed_at"], kind="stable")
    last = h.groupby("opportunity_id").tail(1).set_index("opportunity_id")
    got = o.set_index("opportunity_id")
    assert set(got.index) == set(last.index)
    for col in ("stage", "amount", "close_date"):
        assert list(got[col]) == list(last.loc[got.index, col]), col
    # a deal closed after d is open again, without closed_at or loss reason
    reopened = got["stage"].isin(OPEN)
    assert (got.loc[reopened, "status"] == "open").all()
    assert got.loc[reopened, "closed_at"].isna().all()
    assert got.loc[reopened, "loss_reason"].isna().all()
    assert (got.loc[got["stage"] == "won", "status"] == "won").all()
    # field history rewinds the next-step date
    fh = tables["field_history"].set_index("opportunity_id")
    for oid, row in got.iterrows():
        changed_later = fh.loc[oid, "changed_at"] >= end
        expected = fh.loc[oid, "old_value" if changed_later else "new_value"]
        assert row["next_step_date"] == pd.Timestamp(expected)


@settings(max_examples=40, deadline=None)
@given(companies())
def test_as_of_latest_equals_loaded(tables: dict[str, pd.DataFrame]) -> None:
    crm = _snapshot(tables)
    again = crm.as_of(crm.as_of_date)
    for name in TABLES:
        pd.testing.assert_frame_equal(again.tables[name], crm.tables[name], check_dtype=True, obj=name)


@pytest.fixture
def small() -> CRM:
    o = pd.DataFrame(
        {
            "opportunity_id": ["a", "b"],
            "owner": ["ann", "bob"],
            "created_at": ["2025-01-01", "2025-02-01"],
            "close_date": ["2025-06-01", "2025-04-15"],
            "amount": [100.0, 200.0],
            "stage": ["won", "lost"],
            "closed_at": ["2025-06-01", "2025-04-15"],
            "loss_reason": [None, "price"],
        }
    )
    h = pd.DataFrame(
        {
            "opportunity_id": ["a", "a", "a", "b", "b"],
            "changed_at": ["2025-01-01", "2025-03-01T10:00", "2025-06-01", "2025-02-01", "2025-04-15"],
            "stage": ["qualification", "proposal", "won", "discovery", "lost"],
            "amount": [80.0, 100.0, 100.0, 200.0, 200.0],
            "close_date": ["2025-04-01", "2025-05-01", "2025-06-01", "2025-05-01", "2025-04-15"],
        }
    )
    acts = pd.DataFrame(
        {
            "activity_id": ["x1", "x2"],
            "opportunity_id": ["a", "a"],
            "owner": ["ann", "ann"],
            "type": ["visit", "call"],
            "created_at": ["2025-01-05", "2025-03-20"],
            "due_at": ["2025-02-01", "2025-03-25"],
            "done_at": ["2025-03-02", None],
            "report": ["went well", None],
            "report_context": [True, None],
        }
    )
    return CRM.from_tables({"opportunities": o, "history": h, "activities": acts}, strict=True)


def test_as_of_rules_by_hand(small: CRM) -> None:
    assert small.as_of_date == pd.Timestamp("2025-06-01")
    past = small.as_of("2025-03-01")  # the proposal change at 10:00 that day is known at the end of the day
    o = past.opportunities.set_index("opportunity_id")
    assert o.loc["a", "stage"] == "proposal" and o.loc["a", "amount"] == 100.0 and o.loc["a", "status"] == "open"
    assert (
        o.loc["b", "stage"] == "discovery" and pd.isna(o.loc["b", "loss_reason"]) and pd.isna(o.loc["b", "closed_at"])
    )
    a = past.activities.set_index("activity_id")
    assert list(a.index) == ["x1"]  # x2 was planned later
    assert pd.isna(a.loc["x1", "done_at"]) and pd.isna(a.loc["x1", "report"]) and pd.isna(a.loc["x1", "report_context"])
    earlier = small.as_of("2025-02-28")
    assert earlier.opportunities.set_index("opportunity_id").loc["a", "stage"] == "qualification"
    assert len(small.as_of("2024-12-31").opportunities) == 0


def test_as_of_after_snapshot_is_refused(small: CRM) -> None:
    with pytest.raises(PeriodError, match="after the snapshot date 2025-06-01"):
        small.as_of("2025-07-01")
    with pytest.raises(PeriodError, match="is not a date"):
        small.as_of("next tuesday")


def test_tables_absent_are_empty_with_columns(small: CRM) -> None:
    assert small.orders.empty and list(small.orders.columns) == list(TABLES["orders"].column_names)
    assert not small.has("orders") and small.has("activities")
    with pytest.raises(SchemaError, match="cadence compliance needs the 'orders' table"):
        small.require("orders", "cadence compliance")


def test_summary_and_repr(small: CRM) -> None:
    s = small.summary().set_index("table")
    assert s.loc["opportunities", "rows"] == 2 and s.loc["history", "rows"] == 5
    assert s.loc["history", "last_date"] == pd.Timestamp("2025-06-01")
    assert "2 opportunities (0 open)" in repr(small)
    assert "<table" in small._repr_html_()


def test_inputs_are_not_mutated(small: CRM) -> None:
    before = small.opportunities.copy()
    small.as_of("2025-03-01")
    pd.testing.assert_frame_equal(small.opportunities, before)


def test_subset_by_owner_and_team() -> None:
    from forecastkit.errors import ParameterError

    o = pd.DataFrame(
        {
            "opportunity_id": ["a", "b", "c"],
            "owner": ["ann", "bob", "cat"],
            "team": ["north", "north", None],
            "created_at": ["2025-01-01"] * 3,
            "close_date": ["2025-03-01"] * 3,
            "amount": [1.0, 2.0, 3.0],
            "stage": ["proposal"] * 3,
        }
    )
    h = o[["opportunity_id", "created_at", "stage", "amount", "close_date"]].rename(
        columns={"created_at": "changed_at"}
    )
    reps = pd.DataFrame({"owner": ["ann", "bob", "cat"], "team": ["north", "north", "south"]})
    targets = pd.DataFrame(
        {
            "owner": ["ann", None, None],
            "team": [None, "north", "south"],
            "period": ["2025-Q1"] * 3,
            "metric": ["bookings"] * 3,
            "amount": [10.0, 30.0, 20.0],
        }
    )
    crm = CRM.from_tables({"opportunities": o, "history": h, "reps": reps, "targets": targets}, strict=True)
    north = crm.subset(team="north")
    assert list(north.opportunities["opportunity_id"]) == ["a", "b"]
    assert list(north.history["opportunity_id"]) == ["a", "b"]
    assert sorted(north.targets["amount"]) == [10.0, 30.0]
    south = crm.subset(team="south")  # cat's deal has no team: the reps table says south
    assert list(south.opportunities["opportunity_id"]) == ["c"]
    assert list(crm.subset(owner="bob").opportunities["amount"]) == [2.0]
    with pytest.raises(ParameterError, match="team='west' is not in this CRM; known: north, south"):
        crm.subset(team="west")
    with pytest.raises(ParameterError, match="exactly one of owner=, team= or business_unit="):
        crm.subset(owner="ann", team="north")


def _split_company() -> CRM:
    """Three reps in two teams; cat's deal has no team (the reps table says south), dan is in the reps table only."""
    o = pd.DataFrame(
        {
            "opportunity_id": ["a", "b", "c", "d"],
            "owner": ["ann", "bob", "cat", "ann"],
            "team": ["north", "north", None, "south"],
            "created_at": ["2025-01-01"] * 4,
            "close_date": ["2025-03-01"] * 4,
            "amount": [1.0, 2.0, 3.0, 4.0],
            "stage": ["proposal"] * 4,
        }
    )
    h = o[["opportunity_id", "created_at", "stage", "amount", "close_date"]].rename(
        columns={"created_at": "changed_at"}
    )
    reps = pd.DataFrame({"owner": ["ann", "bob", "cat", "dan"], "team": ["north", "north", "south", "west"]})
    targets = pd.DataFrame(
        {
            "owner": ["ann", None, None, "dan"],
            "team": [None, "north", "south", None],
            "period": ["2025-Q1"] * 4,
            "metric": ["bookings"] * 4,
            "amount": [10.0, 30.0, 20.0, 5.0],
        }
    )
    acts = pd.DataFrame(
        {
            "activity_id": ["x1", "x2", "x3"],
            "opportunity_id": ["a", None, "c"],
            "owner": ["ann", "ann", "cat"],
            "type": ["call"] * 3,
            "created_at": ["2025-01-02"] * 3,
            "due_at": ["2025-01-02"] * 3,
            "done_at": ["2025-01-02"] * 3,
        }
    )
    tables = {"opportunities": o, "history": h, "reps": reps, "targets": targets, "activities": acts}
    return CRM.from_tables(tables, strict=True)


@pytest.mark.parametrize("column", ["team", "owner", "business_unit"])
def test_split_by_equals_subset_for_every_scope(column: str) -> None:
    crm = _split_company()
    split = crm.split_by(column)
    assert len(split) == len(list(split))
    for key in split:
        part, sub = split[key], crm.subset(**{column: key})
        assert part.has("activities") and not part.has("orders")
        for name in TABLES:
            pd.testing.assert_frame_equal(part.tables[name], sub.tables[name], check_exact=True)


def test_split_by_keys_rows_and_positions() -> None:
    crm = _split_company()
    teams = crm.split_by("team")
    assert list(teams) == ["north", "south", "west"]  # west: a rep's team without deals
    assert repr(teams) == "<CRM split by team: 3 scopes>"
    # ann is in north (deal a) and south (deal d): her deal-less activity and target are in both
    assert list(teams["north"].opportunities["opportunity_id"]) == ["a", "b"]
    assert list(teams["south"].opportunities["opportunity_id"]) == ["c", "d"]
    assert list(teams["south"].activities["activity_id"]) == ["x2", "x3"]
    assert sorted(teams["north"].targets["amount"]) == [10.0, 30.0]
    assert sorted(teams["south"].targets["amount"]) == [10.0, 20.0]
    assert list(teams["west"].targets["amount"]) == [5.0]
    assert teams["west"].opportunities.empty
    assert list(teams.positions("south")) == [2, 3]
    owners = crm.split_by("owner")
    assert list(owners) == ["ann", "bob", "cat", "dan"]
    assert list(owners["ann"].opportunities["amount"]) == [1.0, 4.0]
    with pytest.raises(KeyError):
        teams["east"]


def test_split_by_rejects_other_columns() -> None:
    from forecastkit.errors import ParameterError

    with pytest.raises(ParameterError, match="split_by\\(\\) takes 'owner', 'team' or 'business_unit', got 'segment'"):
        _split_company().split_by("segment")  # type: ignore[arg-type]


def test_rewinding_twice_converts_field_history_once_with_the_same_values(raw_tables: dict[str, pd.DataFrame]) -> None:
    from forecastkit.data.crm import _last_rows

    crm = CRM.from_tables(raw_tables, as_of="2026-06-30")
    fh = crm.field_history
    assert len(fh)
    dates = sorted(set(fh["changed_at"].dt.normalize() - pd.Timedelta(days=1)))
    first = [crm.as_of(d).opportunities for d in dates]  # the first rewind converts per call, later ones once
    fresh = CRM(crm.tables, as_of_date=crm.as_of_date, playbook=crm.playbook)
    for d, expected in zip(dates, first, strict=True):
        pd.testing.assert_frame_equal(fresh.as_of(d).opportunities, expected)
        pd.testing.assert_frame_equal(CRM(crm.tables, as_of_date=crm.as_of_date).as_of(d).opportunities, expected)
    ids = crm.history["opportunity_id"]
    expected_rows = ids.to_frame().assign(r=range(len(ids))).groupby("opportunity_id", sort=False).tail(1)["r"]
    assert _last_rows(ids).tolist() == expected_rows.tolist()
    shuffled = ids.sample(frac=1.0, random_state=0).reset_index(drop=True)
    expected_rows = shuffled.to_frame().assign(r=range(len(ids))).groupby("opportunity_id", sort=False).tail(1)["r"]
    assert _last_rows(shuffled).tolist() == expected_rows.tolist()
