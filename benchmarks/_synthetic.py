"""A large synthetic CRM built with numpy, shared by the hygiene and KPI benchmarks.

Canonical dtypes, no validation pass (the loader is not what these benchmarks time).
``N_REPS`` reps in teams of six and business units of 2,000; deals with 1-5 history
rows each (stages increasing, the last row decides the status); activities of which a
quarter are cadence steps on the deal's creation day + the step's day; visit reports
with the five boxes; contacts (10-30 % of each field missing) and accounts; optionally
orders of customers ordering on a regular cycle (30/60/90 days, a third stopping), sales
targets and the ``reps`` table. (The memory readings the scripts print are in ``_memory.py``.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.data.validate import empty_table

AS_OF = pd.Timestamp("2026-11-20")
STAGES = np.array(["to_contact", "qualification", "discovery", "proposal", "negotiation", "won", "lost"], dtype=object)
N_REPS = 4000
_BOXES = ("report_context", "report_discovery", "report_proofs", "report_risks", "report_next_step")


def _ids(prefix: str, n: int) -> np.ndarray:
    return (prefix + pd.Series(np.arange(n)).astype(str).str.zfill(8)).to_numpy(dtype=object)


def _table(name: str, cols: dict[str, object]) -> pd.DataFrame:
    """The canonical empty table ``name`` filled with ``cols`` (missing columns all empty)."""
    base = empty_table(name)
    n = len(next(iter(cols.values())))
    out = {}
    for c in base.columns:
        dt = base[c].dtype
        v = cols.get(c)
        if v is None:
            out[c] = pd.Series(pd.array([pd.NA] * 0, dtype=dt)).reindex(range(n)) if n else base[c]
        else:
            out[c] = pd.array(v, dtype=dt) if str(dt) in ("string", "boolean") else np.asarray(v).astype(dt)
    return pd.DataFrame(out)


def synthesize(n_opp: int, n_act: int, n_orders: int = 0, *, seed: int = 0, targets: bool = False) -> CRM:
    """The synthetic CRM (see the module docstring); ``n_orders=0`` leaves out orders, ``targets`` adds targets and reps."""
    rng = np.random.default_rng(seed)
    day = np.timedelta64(1, "D")
    start = np.datetime64("2023-01-01")
    asof = AS_OF.to_datetime64()
    span = (asof - start) / day
    owners = np.array([f"rep {i:04d}" for i in range(N_REPS)], dtype=object)
    teams = np.array([f"team {i // 6:03d}" for i in range(N_REPS)], dtype=object)
    bus = np.array([f"bu {i // 2000}" for i in range(N_REPS)], dtype=object)
    opp_ids = _ids("O", n_opp)
    n_acc = max(1, n_opp // 3)
    acc_ids = _ids("A", n_acc)
    acc_owner = rng.integers(0, N_REPS, n_acc)
    acc_i = rng.integers(0, n_acc, n_opp)
    rep = acc_owner[acc_i]  # a deal belongs to its account's owner
    created = start + (rng.uniform(0, span, n_opp) * 86400).astype("timedelta64[s]")

    # deals: 1-5 history rows each, stages increasing; the last row decides the status
    k = rng.integers(1, 6, n_opp)
    hi = np.repeat(np.arange(n_opp), k)
    pos = np.arange(len(hi)) - np.repeat(np.cumsum(k) - k, k)
    entry = rng.integers(0, 2, n_opp)
    stage_i = np.minimum(entry[hi] + pos, 4)
    last = np.r_[np.flatnonzero(np.diff(hi)), len(hi) - 1]
    closed = rng.random(n_opp) < 0.7
    final = np.where(closed, np.where(rng.random(n_opp) < 0.3, 5, 6), stage_i[last])
    stage_i[last] = final
    gap = np.cumsum(rng.gamma(2.0, 10.0, len(hi)))
    offs = gap - np.repeat(gap[np.r_[0, last[:-1] + 1]], k)
    changed = np.minimum(created[hi] + (offs * 86400).astype("timedelta64[s]"), asof - np.timedelta64(1, "s"))
    amount = np.round(rng.lognormal(9.5, 1.0, n_opp), -2)
    close_date = (created + (rng.uniform(30, 200, n_opp) * day).astype("timedelta64[D]")).astype("datetime64[D]")
    status = np.where(final == 5, "won", np.where(final == 6, "lost", "open")).astype(object)
    nsd = np.datetime64(AS_OF.date()) + rng.integers(-30, 30, n_opp).astype("timedelta64[D]")
    nsd = np.where(rng.random(n_opp) < 0.1, np.datetime64("NaT"), nsd)
    opps = _table(
        "opportunities",
        {
            "opportunity_id": opp_ids,
            "account_id": acc_ids[acc_i],
            "name": opp_ids,
            "owner": owners[rep],
            "team": teams[rep],
            "business_unit": bus[rep],
            "created_at": created.astype("datetime64[ns]"),
            "close_date": close_date.astype("datetime64[ns]"),
            "amount": amount,
            "stage": STAGES[final],
            "status": status,
            "closed_at": np.where(status != "open", changed[last], np.datetime64("NaT")).astype("datetime64[ns]"),
            "next_step": np.where(rng.random(n_opp) < 0.05, None, "call").astype(object),
            "next_step_date": nsd.astype("datetime64[ns]"),
            "budget": np.where(rng.random(n_opp) < 0.2, np.nan, amount * 1.2),
            "decision_maker": np.where(rng.random(n_opp) < 0.2, None, "CFO").astype(object),
        },
    )
    hist = _table(
        "history",
        {
            "opportunity_id": opp_ids[hi],
            "changed_at": changed.astype("datetime64[ns]"),
            "stage": STAGES[stage_i],
            "amount": amount[hi],
            "close_date": close_date[hi].astype("datetime64[ns]"),
        },
    )

    # activities: 25% cadence steps on the deal's creation day + the step's day, the rest calls/e-mails/visits
    ai = rng.integers(0, n_opp, n_act)
    steps = np.array(["d0_call", "d0_email", "d2_social", "d5_reminder", "d9_case_study", "d14_call"], dtype=object)
    step_day = np.array([0, 0, 2, 5, 9, 14])
    cad = rng.random(n_act) < 0.25
    si = rng.integers(0, 6, n_act)
    due = created[ai] + (np.where(cad, step_day[si], rng.uniform(0, 120, n_act)) * 86400).astype("timedelta64[s]")
    due = np.minimum(due, asof)
    done = due + (rng.exponential(0.8, n_act) * 86400).astype("timedelta64[s]")
    done = np.where((rng.random(n_act) < 0.1) | (done > asof), np.datetime64("NaT"), done)
    step_type = np.array(["call", "email", "social", "email", "email", "call"], dtype=object)
    types = np.array(["call", "email", "visit", "meeting", "social"], dtype=object)
    typ = np.where(cad, step_type[si], types[rng.integers(0, 5, n_act)])
    is_visit = np.isin(typ, ["visit", "meeting"])
    acts = _table(
        "activities",
        {
            "activity_id": _ids("T", n_act),
            "opportunity_id": opp_ids[ai],
            "account_id": acc_ids[acc_i[ai]],
            "owner": owners[rep[ai]],
            "type": typ,
            "cadence_step": np.where(cad, steps[si], None),
            "created_at": due.astype("datetime64[ns]"),
            "due_at": due.astype("datetime64[ns]"),
            "done_at": done.astype("datetime64[ns]"),
            **{b: np.where(is_visit, rng.random(n_act) < 0.8, None) for b in _BOXES},
        },
    )

    n_con = n_acc * 2
    emails = "p" + pd.Series(np.arange(n_con)).astype(str).to_numpy(object) + "@x.test"
    contacts = _table(
        "contacts",
        {
            "contact_id": _ids("K", n_con),
            "account_id": acc_ids[rng.integers(0, n_acc, n_con)],
            "name": _ids("N", n_con),
            "job_title": np.where(rng.random(n_con) < 0.2, None, "CFO"),
            "department": np.where(rng.random(n_con) < 0.3, None, "Finance"),
            "email": np.where(rng.random(n_con) < 0.1, None, emails),
            "phone": np.where(rng.random(n_con) < 0.25, None, "+33 6 12 34 56 78"),
            "created_at": (start + rng.integers(0, int(span), n_con).astype("timedelta64[D]")).astype("datetime64[ns]"),
        },
    )
    accounts = _table(
        "accounts",
        {
            "account_id": acc_ids,
            "name": _ids("Co ", n_acc),
            "owner": owners[acc_owner],
            "created_at": (start + rng.integers(0, int(span), n_acc).astype("timedelta64[D]")).astype("datetime64[ns]"),
        },
    )
    tables = {"opportunities": opps, "history": hist, "activities": acts, "contacts": contacts, "accounts": accounts}
    if n_orders:
        tables["orders"] = _orders(rng, n_orders, acc_ids, owners[acc_owner], start, span)
    if targets:
        periods = [f"{y}-Q{q}" for y in (2025, 2026) for q in (1, 2, 3, 4)]
        metrics = (("bookings", 100_000.0), ("invoiced", 60_000.0), ("ordered", 60_000.0), ("orders", 30.0))
        n_t = len(periods) * len(metrics)
        tables["targets"] = _table(
            "targets",
            {
                "owner": np.repeat(owners, n_t),
                "period": np.tile(np.repeat(periods, len(metrics)), N_REPS).astype(object),
                "metric": np.tile([m for m, _ in metrics], N_REPS * len(periods)).astype(object),
                "amount": np.tile([a for _, a in metrics], N_REPS * len(periods)),
            },
        )
        tables["reps"] = _table("reps", {"owner": owners, "team": teams, "business_unit": bus})
    return CRM(tables, as_of_date=AS_OF)


def _orders(
    rng: np.random.Generator,
    n_orders: int,
    acc_ids: np.ndarray,
    acc_owner: np.ndarray,
    start: np.datetime64,
    span: float,
) -> pd.DataFrame:
    """Customers ordering on a regular cycle (30/60/90 days, +-15%), wrapped into the window."""
    day = np.timedelta64(1, "D")
    asof = AS_OF.to_datetime64()
    n_cust = max(1, min(n_orders // 12, len(acc_ids)))
    cust = rng.choice(len(acc_ids), n_cust, replace=False)
    cycle = rng.choice([30.0, 60.0, 90.0], n_cust)
    per = np.maximum(1, rng.poisson(n_orders / n_cust, n_cust))
    per = np.round(per * n_orders / per.sum()).astype(int)
    oi = np.repeat(np.arange(n_cust), per)
    kth = np.arange(len(oi)) - np.repeat(np.cumsum(per) - per, per)
    first = rng.uniform(0, 60, n_cust)
    t = np.mod(first[oi] + kth * cycle[oi] * np.exp(rng.normal(0, 0.15, len(oi))), span)
    ordered = start + (t * 86400).astype("timedelta64[s]")
    m = len(oi)
    amount = np.round(rng.lognormal(8, 0.8, m), 2)
    inv = ordered + (rng.uniform(1, 10, m) * 86400).astype("timedelta64[s]")
    inv = np.where(inv < asof, inv, np.datetime64("NaT"))
    promised = ordered + (rng.integers(7, 31, m) * day)
    delivered = promised + (rng.uniform(-3, 10, m) * 86400).astype("timedelta64[s]")
    delivered = np.where(delivered < asof, delivered, np.datetime64("NaT"))
    disc = np.where(rng.random(m) < 0.5, 0.0, np.round(rng.uniform(0.02, 0.25, m), 2))
    return _table(
        "orders",
        {
            "order_id": _ids("R", m),
            "account_id": acc_ids[cust[oi]],
            "owner": acc_owner[cust[oi]],
            "ordered_at": ordered.astype("datetime64[ns]"),
            "amount": amount,
            "discount": disc,
            "margin": np.round(amount * (0.45 - disc), 2),
            "invoiced_at": inv.astype("datetime64[ns]"),
            "invoiced_amount": np.where(np.isnat(inv), np.nan, amount),
            "promised_delivery": promised.astype("datetime64[ns]"),
            "delivered_at": delivered.astype("datetime64[ns]"),
        },
    )
