"""Inactive and lost customers by the usual-cycle rule, on hand-built orders (snapshot 2026-06-30).

* X orders every 30 days (01-01, 01-31, 03-02, 04-01): cycle 30; 90 days since -> past
  2.5 cycles (75 days) -> lost since 04-01 + 75 days = 06-15.
* Y (05-01, 05-31, 06-10): gaps 30 and 10 -> cycle 20; 20 days since -> active.
* Z (03-01, 03-31, 04-30): cycle 30; 61 days since -> past 1.5 cycles (45) but not 2.5 ->
  inactive since 04-30 + 45 = 06-14.
* W: a single order -> one_off (no rhythm yet).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecastkit.data.crm import CRM
from forecastkit.errors import FallbackWarning, ParameterError, SchemaError
from forecastkit.kpi.customers import customer_activity, customer_churn

AS_OF = "2026-06-30"
_ORDERS = {
    "X": ["2026-01-01", "2026-01-31", "2026-03-02", "2026-04-01"],
    "Y": ["2026-05-01", "2026-05-31", "2026-06-10"],
    "Z": ["2026-03-01", "2026-03-31", "2026-04-30"],
    "W": ["2026-02-01"],
}
_OWNER = {"X": "alice", "Y": "alice", "Z": "bob", "W": "bob"}


def _crm(orders: dict[str, list[str]] | None = None) -> CRM:
    orders = orders or _ORDERS
    rows = [
        (f"R{acc}{i}", acc, _OWNER.get(acc, "alice"), d, 100.0) for acc, ds in orders.items() for i, d in enumerate(ds)
    ]
    o = pd.DataFrame(rows, columns=["order_id", "account_id", "owner", "ordered_at", "amount"])
    opp = pd.DataFrame(
        {
            "opportunity_id": ["O1"],
            "owner": ["alice"],
            "created_at": ["2026-01-01"],
            "close_date": ["2026-02-01"],
            "amount": [1.0],
            "stage": ["qualification"],
        }
    )
    reps = pd.DataFrame({"owner": ["alice", "bob"], "team": ["north", "south"]})
    return CRM.from_tables({"opportunities": opp, "orders": o, "reps": reps}, as_of=AS_OF)


def test_customer_activity_rule_by_hand() -> None:
    with pytest.warns(FallbackWarning, match="BG/NBD could not be fitted"):
        a = customer_activity(_crm()).set_index("account_id")
    assert a["status"].to_dict() == {"W": "one_off", "X": "lost", "Y": "active", "Z": "inactive"}
    assert a["usual_cycle_days"].to_dict() == pytest.approx({"W": np.nan, "X": 30, "Y": 20, "Z": 30}, nan_ok=True)
    assert a.loc["X", "days_since_last_order"] == 90
    assert a.loc["X", "cycles_since_last_order"] == 3
    assert a.loc["X", "lost_at"] == pd.Timestamp("2026-06-15")
    assert a.loc["Z", "inactive_since"] == pd.Timestamp("2026-06-14")
    assert pd.isna(a.loc["Z", "lost_at"])
    assert a.loc["Y", "orders"] == 3 and a.loc["Y", "owner"] == "alice"
    assert a["p_alive"].isna().all()  # too few customers for BG/NBD


def test_strict_rule_without_tolerance() -> None:
    a = customer_activity(_crm(), tolerance=0.0, p_alive=False).set_index("account_id")
    # Y: 20 days since, cycle 20 -> not past one cycle yet; Z: 61 > 2 x 30 -> lost
    assert a["status"].to_dict() == {"W": "one_off", "X": "lost", "Y": "active", "Z": "lost"}


def test_p_alive_from_bgnbd() -> None:
    rng = np.random.default_rng(0)
    orders = {}
    for i in range(40):
        # monthly buyers from early 2025; a quarter of them stopped in mid-2025
        end = pd.Timestamp("2025-07-01") if i % 4 == 0 else pd.Timestamp("2026-06-25")
        d = pd.Timestamp("2025-01-01") + pd.Timedelta(days=int(rng.integers(0, 30)))
        days = []
        while d < end:
            days.append(str(d.date()))
            d += pd.Timedelta(days=int(rng.integers(25, 36)))
        orders[f"C{i:02d}"] = days
    a = customer_activity(_crm(orders)).set_index("account_id")
    assert a["p_alive"].between(0, 1).all()
    lost = a[a["status"] == "lost"]
    active = a[a["status"] == "active"]
    assert len(lost) and len(active)
    assert lost["p_alive"].mean() < active["p_alive"].mean()


def test_customer_churn_by_month() -> None:
    c = customer_churn(_crm(), "month", since="2026-05-01").set_index("period")
    # June: X, Y, Z are repeat buyers that ordered before June and were not lost (W is one-off); X lost on 06-15
    assert c.loc["2026-06", ["customers_start", "became_lost"]].tolist() == [3, 1]
    assert c.loc["2026-06", "churn_rate"] == pytest.approx(1 / 3)
    # May: X and Z at the start; Y is new
    assert c.loc["2026-05", ["customers_start", "new_customers", "became_lost"]].tolist() == [2, 1, 0]
    t = customer_churn(_crm(), "2026-06", by="team").set_index("team")
    assert t.loc["north", ["customers_start", "became_lost"]].tolist() == [2, 1]  # X and Y are alice's
    assert t.loc["south", ["customers_start", "became_lost"]].tolist() == [1, 0]


def test_reactivated_customer_is_active_again() -> None:
    orders = {"X": ["2026-01-01", "2026-01-11", "2026-01-21", "2026-03-01", "2026-03-11"]}  # gaps 10, 10, 39, 10
    c = customer_churn(_crm(orders), "month").set_index("period")
    # cycle 10 -> lost on 01-21 + 25 = 02-15; back on 03-01 -> counted again from April
    assert c.loc["2026-02", "became_lost"] == 1
    assert c.loc["2026-03", "customers_start"] == 0
    assert c.loc["2026-04", "customers_start"] == 1


def test_errors() -> None:
    with pytest.raises(ParameterError, match="tolerance=-1 must be >= 0"):
        customer_activity(_crm(), tolerance=-1)
    with pytest.raises(ParameterError, match="customers can be grouped by owner, team or business_unit"):
        customer_churn(_crm(), by="segment")
    with pytest.raises(ParameterError, match="needs a period or a frequency"):
        customer_churn(_crm(), None)
    opp = pd.DataFrame(
        {
            "opportunity_id": ["O1"],
            "owner": ["a"],
            "created_at": ["2026-01-01"],
            "close_date": ["2026-02-01"],
            "amount": [1.0],
            "stage": ["qualification"],
        }
    )
    with pytest.raises(SchemaError, match="customer activity needs the 'orders' table"):
        customer_activity(CRM.from_tables({"opportunities": opp}, as_of=AS_OF))


def test_unit_economics_from_orders() -> None:
    from forecastkit.kpi.economics import unit_economics

    u = unit_economics(_crm(), "2026-06", revenue="orders", gross_margin=0.5).iloc[0]
    # June: X, Y, Z are the repeat customers at the start, none new; X became lost -> churn 1/3
    assert u["churn_rate"] == pytest.approx(1 / 3)
    assert u["active_customers"] == 3
    months = 30 / 30.4375
    assert u["arpu"] == pytest.approx(100 / 3 / months)  # Y's 06-10 order
    assert u["monthly_churn_rate"] == pytest.approx(1 - (2 / 3) ** (1 / months))
    assert np.isnan(u["nrr"])
