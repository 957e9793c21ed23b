"""Benchmark: the four dashboards for every rep on 1,000,000 opportunities and 2,000,000 orders.

Synthesizes a CRM with numpy (canonical dtypes, no validation pass): 4,000 reps in
teams of six, 1,000,000 deals with 1-5 history rows each, 2,000,000 orders of
customers ordering on a regular cycle, 3,000,000 activities, accounts, contacts,
targets. Then times ``dashboards(crm, which, level="rep")`` for each of the four
dashboards (every rep in one pass) and one single-rep ``dashboard`` call.

Prints seconds per dashboard and the peak resident memory (Linux ``VmHWM``, reset
once the synthetic tables are built, so the tables are included but not their
synthesis temporaries). Target: under 30 s in total and under 6 GB on 2 cores.

Run: ``.venv/bin/python benchmarks/bench_kpi.py [n_opportunities] [n_orders] [n_activities]``
"""

from __future__ import annotations

import gc
import resource
import sys
import time

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.data.validate import empty_table
from forecastkit.kpi.dashboards import DASHBOARDS, dashboard, dashboards

AS_OF = pd.Timestamp("2026-11-20")
STAGES = np.array(["to_contact", "qualification", "discovery", "proposal", "negotiation", "won", "lost"], dtype=object)
N_REPS = 4000


def _peak_gb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _ids(prefix: str, n: int) -> np.ndarray:
    return (prefix + pd.Series(np.arange(n)).astype(str).str.zfill(8)).to_numpy(dtype=object)


def _table(name: str, cols: dict[str, object]) -> pd.DataFrame:
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


def synthesize(n_opp: int, n_orders: int, n_act: int, seed: int = 0) -> CRM:
    """A large synthetic CRM (see the module docstring)."""
    rng = np.random.default_rng(seed)
    day = np.timedelta64(1, "D")
    start = np.datetime64("2023-01-01")
    asof = AS_OF.to_datetime64()
    span = (asof - start) / day
    owners = np.array([f"rep {i:04d}" for i in range(N_REPS)], dtype=object)
    teams = np.array([f"team {i // 6:03d}" for i in range(N_REPS)], dtype=object)
    bus = np.array([f"bu {i // 2000}" for i in range(N_REPS)], dtype=object)
    opp_ids = _ids("O", n_opp)
    n_acc = n_opp // 3
    acc_ids = _ids("A", n_acc)
    acc_owner = rng.integers(0, N_REPS, n_acc)
    acc_i = rng.integers(0, n_acc, n_opp)
    rep = acc_owner[acc_i]
    created = start + (rng.uniform(0, span, n_opp) * 86400).astype("timedelta64[s]")
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
    # orders: customers order on a regular cycle (30/60/90 days, +-15%); a third stop at a random date
    n_cust = max(1, n_orders // 12)
    cust = rng.choice(n_acc, n_cust, replace=False)
    cycle = rng.choice([30.0, 60.0, 90.0], n_cust)
    per = np.maximum(1, rng.poisson(n_orders / n_cust, n_cust))
    per = np.round(per * n_orders / per.sum()).astype(int)
    oi = np.repeat(np.arange(n_cust), per)
    kth = np.arange(len(oi)) - np.repeat(np.cumsum(per) - per, per)
    first = rng.uniform(0, 60, n_cust)
    t = first[oi] + kth * cycle[oi] * np.exp(rng.normal(0, 0.15, len(oi)))
    t = np.mod(t, span)  # keep every order inside the window
    ordered = start + (t * 86400).astype("timedelta64[s]")
    m = len(oi)
    oamt = np.round(rng.lognormal(8, 0.8, m), 2)
    inv = ordered + (rng.uniform(1, 10, m) * 86400).astype("timedelta64[s]")
    inv = np.where(inv < asof, inv, np.datetime64("NaT"))
    promised = ordered + (rng.integers(7, 31, m) * day)
    delivered = promised + (rng.uniform(-3, 10, m) * 86400).astype("timedelta64[s]")
    delivered = np.where(delivered < asof, delivered, np.datetime64("NaT"))
    disc = np.where(rng.random(m) < 0.5, 0.0, np.round(rng.uniform(0.02, 0.25, m), 2))
    orders = _table(
        "orders",
        {
            "order_id": _ids("R", m),
            "account_id": acc_ids[cust[oi]],
            "owner": owners[acc_owner[cust[oi]]],
            "ordered_at": ordered.astype("datetime64[ns]"),
            "amount": oamt,
            "discount": disc,
            "margin": np.round(oamt * (0.45 - disc), 2),
            "invoiced_at": inv.astype("datetime64[ns]"),
            "invoiced_amount": np.where(np.isnat(inv), np.nan, oamt),
            "promised_delivery": promised.astype("datetime64[ns]"),
            "delivered_at": delivered.astype("datetime64[ns]"),
        },
    )
    ai = rng.integers(0, n_opp, n_act)
    due = np.minimum(created[ai] + (rng.uniform(0, 120, n_act) * 86400).astype("timedelta64[s]"), asof)
    done = due + (rng.exponential(0.8, n_act) * 86400).astype("timedelta64[s]")
    done = np.where((rng.random(n_act) < 0.1) | (done > asof), np.datetime64("NaT"), done)
    typ = np.array(["call", "email", "visit", "meeting", "social"], dtype=object)[rng.integers(0, 5, n_act)]
    acts = _table(
        "activities",
        {
            "activity_id": _ids("T", n_act),
            "opportunity_id": opp_ids[ai],
            "account_id": acc_ids[acc_i[ai]],
            "owner": owners[rep[ai]],
            "type": typ,
            "created_at": due.astype("datetime64[ns]"),
            "due_at": due.astype("datetime64[ns]"),
            "done_at": done.astype("datetime64[ns]"),
            "report_context": np.where(typ == "visit", rng.random(n_act) < 0.8, None),
        },
    )
    n_con = n_acc
    contacts = _table(
        "contacts",
        {
            "contact_id": _ids("K", n_con),
            "account_id": acc_ids[rng.integers(0, n_acc, n_con)],
            "name": _ids("N", n_con),
            "job_title": np.where(rng.random(n_con) < 0.2, None, "CFO"),
            "department": np.where(rng.random(n_con) < 0.3, None, "Finance"),
            "email": np.where(rng.random(n_con) < 0.1, None, "p@x.test"),
            "phone": np.where(rng.random(n_con) < 0.25, None, "+33 6 12 34 56 78"),
            "created_at": (start + rng.integers(0, int(span), n_con).astype("timedelta64[D]")).astype("datetime64[ns]"),
        },
    )
    accounts = _table(
        "accounts",
        {
            "account_id": acc_ids,
            "name": acc_ids,
            "owner": owners[acc_owner],
            "created_at": (start + rng.integers(0, int(span), n_acc).astype("timedelta64[D]")).astype("datetime64[ns]"),
        },
    )
    periods = [f"{y}-Q{q}" for y in (2025, 2026) for q in (1, 2, 3, 4)]
    tg = [
        {"owner": o, "period": p, "metric": mtr, "amount": a}
        for o in owners
        for p in periods
        for mtr, a in (("bookings", 100_000.0), ("invoiced", 60_000.0), ("ordered", 60_000.0), ("orders", 30.0))
    ]
    targets = _table("targets", {c: [r[c] for r in tg] for c in ("owner", "period", "metric", "amount")})
    reps = _table("reps", {"owner": owners, "team": teams, "business_unit": bus})
    tables = {
        "opportunities": opps,
        "history": hist,
        "orders": orders,
        "activities": acts,
        "contacts": contacts,
        "accounts": accounts,
        "targets": targets,
        "reps": reps,
    }
    return CRM(tables, as_of_date=AS_OF)


def main() -> None:
    n_opp = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    n_ord = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000_000
    n_act = int(sys.argv[3]) if len(sys.argv) > 3 else 3_000_000
    t0 = time.perf_counter()
    crm = synthesize(n_opp, n_ord, n_act)
    print(
        f"synthesized {len(crm.opportunities):,} opportunities, {len(crm.history):,} history rows, "
        f"{len(crm.orders):,} orders, {len(crm.activities):,} activities in {time.perf_counter() - t0:.1f} s"
    )
    gc.collect()
    _reset_peak()
    total = 0.0
    for which in DASHBOARDS:
        t = time.perf_counter()
        res = dashboards(crm, which, level="rep")
        dt = time.perf_counter() - t
        total += dt
        n_tiles = max(len(d.tiles) for d in res.values())
        print(f"{which:15s} {len(res):5d} reps x {n_tiles} tiles: {dt:6.1f} s")
        del res
    print(f"all four dashboards for every rep: {total:.1f} s; peak memory {_peak_gb():.2f} GB")
    t = time.perf_counter()
    for which in DASHBOARDS:
        dashboard(crm, which, level="rep", who="rep 0001")
    print(f"the four dashboards of one rep (dashboard(who=...)): {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
