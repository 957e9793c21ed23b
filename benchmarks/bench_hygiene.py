"""Benchmark: the full pipeline review on 1,000,000 opportunities and 10,000,000 activities.

Synthesizes a CRM with numpy (canonical dtypes, no validation pass), then times
``fk.hygiene.review`` (every check) and the scorecard. Prints seconds and the
peak resident memory during the review (Linux ``VmHWM`` after resetting it once
the synthetic tables are built; the tables themselves are included, their
synthesis temporaries are not).

Run: ``.venv/bin/python benchmarks/bench_hygiene.py [n_opportunities] [n_activities]``
"""

from __future__ import annotations

import gc
import resource
import sys
import time

import numpy as np
import pandas as pd

import forecastkit as fk
from forecastkit.data.crm import CRM
from forecastkit.data.validate import empty_table

AS_OF = pd.Timestamp("2026-11-20")
STAGES = np.array(["to_contact", "qualification", "discovery", "proposal", "negotiation", "won", "lost"], dtype=object)


def _rss_gb() -> float:
    """Peak resident memory (GB): VmHWM since the last :func:`_reset_peak` on Linux, else the process peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _current_gb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def _reset_peak() -> None:
    """Reset the peak-RSS counter (Linux: write 5 to /proc/self/clear_refs) so the review's own peak is measured."""
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


def synthesize(n_opp: int, n_act: int, seed: int = 0) -> CRM:
    rng = np.random.default_rng(seed)
    day = np.timedelta64(1, "D")
    start = np.datetime64("2023-01-01")
    span = (AS_OF.to_datetime64() - start) / day
    opp_ids = _ids("O", n_opp)
    n_acc = n_opp // 3
    acc_ids = _ids("A", n_acc)
    owners = np.array([f"rep {i:04d}" for i in range(4000)], dtype=object)
    teams = np.array([f"team {i // 6:03d}" for i in range(4000)], dtype=object)
    rep = rng.integers(0, 4000, n_opp)
    created = start + (rng.uniform(0, span, n_opp) * 86400).astype("timedelta64[s]")
    # 1-5 history rows per deal, stages increasing; the last one decides the status
    k = rng.integers(1, 6, n_opp)
    hi = np.repeat(np.arange(n_opp), k)
    pos = np.arange(len(hi)) - np.repeat(np.cumsum(k) - k, k)
    entry = rng.integers(0, 2, n_opp)
    stage_i = np.minimum(entry[hi] + pos, 4)
    last = np.r_[np.flatnonzero(np.diff(hi)), len(hi) - 1]
    closed = rng.random(n_opp) < 0.7
    final = np.where(closed, np.where(rng.random(n_opp) < 0.3, 5, 6), stage_i[last])
    stage_i[last] = final
    gap = np.cumsum(rng.gamma(2.0, 10.0, len(hi)), axis=0)
    offs = gap - np.repeat(gap[np.r_[0, last[:-1] + 1]], k)
    changed = created[hi] + (offs * 86400).astype("timedelta64[s]")
    changed = np.minimum(changed, AS_OF.to_datetime64() - np.timedelta64(1, "s"))
    amount = np.round(rng.lognormal(9.5, 1.0, n_opp), -2)
    close_date = (created + (rng.uniform(30, 200, n_opp) * day).astype("timedelta64[D]")).astype("datetime64[D]")
    status = np.where(final == 5, "won", np.where(final == 6, "lost", "open")).astype(object)
    nsd = np.datetime64(AS_OF.date()) + rng.integers(-30, 30, n_opp).astype("timedelta64[D]")
    nsd = np.where(rng.random(n_opp) < 0.1, np.datetime64("NaT"), nsd)
    budget = np.where(rng.random(n_opp) < 0.2, np.nan, amount * 1.2)
    dm = np.where(rng.random(n_opp) < 0.2, None, "CFO").astype(object)
    opps = _table(
        "opportunities",
        {
            "opportunity_id": opp_ids,
            "account_id": acc_ids[rng.integers(0, n_acc, n_opp)],
            "name": opp_ids,
            "owner": owners[rep],
            "team": teams[rep],
            "created_at": created.astype("datetime64[ns]"),
            "close_date": close_date.astype("datetime64[ns]"),
            "amount": amount,
            "stage": STAGES[final],
            "status": status,
            "closed_at": np.where(status != "open", changed[last], np.datetime64("NaT")).astype("datetime64[ns]"),
            "next_step": np.where(rng.random(n_opp) < 0.05, None, "call").astype(object),
            "next_step_date": nsd.astype("datetime64[ns]"),
            "budget": budget,
            "decision_maker": dm,
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
    # activities: 25% cadence steps on leads, the rest calls/emails/visits/meetings
    ai = rng.integers(0, n_opp, n_act)
    steps = np.array(["d0_call", "d0_email", "d2_social", "d5_reminder", "d9_case_study", "d14_call"], dtype=object)
    step_day = np.array([0, 0, 2, 5, 9, 14])
    cad = rng.random(n_act) < 0.25
    si = rng.integers(0, 6, n_act)
    due = created[ai] + (np.where(cad, step_day[si], rng.uniform(0, 120, n_act)) * 86400).astype("timedelta64[s]")
    due = np.minimum(due, AS_OF.to_datetime64())
    done = due + (rng.exponential(0.8, n_act) * 86400).astype("timedelta64[s]")
    done = np.where((rng.random(n_act) < 0.1) | (done > AS_OF.to_datetime64()), np.datetime64("NaT"), done)
    types = np.array(["call", "email", "visit", "meeting", "social"], dtype=object)
    typ = np.where(
        cad,
        np.array(["call", "email", "social", "email", "email", "call"], dtype=object)[si],
        types[rng.integers(0, 5, n_act)],
    )
    is_vis = np.isin(typ, ["visit", "meeting"])
    flags = {
        b: np.where(is_vis, rng.random(n_act) < 0.8, None)
        for b in ("report_context", "report_discovery", "report_proofs", "report_risks", "report_next_step")
    }
    acts = _table(
        "activities",
        {
            "activity_id": _ids("T", n_act),
            "opportunity_id": opp_ids[ai],
            "account_id": opps["account_id"].to_numpy(object)[ai],
            "owner": owners[rep[ai]],
            "type": typ,
            "cadence_step": np.where(cad, steps[si], None),
            "created_at": due.astype("datetime64[ns]"),
            "due_at": due.astype("datetime64[ns]"),
            "done_at": done.astype("datetime64[ns]"),
            **flags,
        },
    )
    n_con = n_acc * 2
    ci = rng.integers(0, n_acc, n_con)
    emails = np.where(
        rng.random(n_con) < 0.1, None, "p" + pd.Series(np.arange(n_con)).astype(str).to_numpy(object) + "@x.test"
    )
    contacts = _table(
        "contacts",
        {
            "contact_id": _ids("K", n_con),
            "account_id": acc_ids[ci],
            "name": _ids("N", n_con),
            "job_title": np.where(rng.random(n_con) < 0.2, None, "CFO"),
            "department": np.where(rng.random(n_con) < 0.3, None, "Finance"),
            "email": emails,
            "phone": np.where(rng.random(n_con) < 0.25, None, "+33 6 12 34 56 78"),
            "created_at": (start + rng.integers(0, int(span), n_con).astype("timedelta64[D]")).astype("datetime64[ns]"),
        },
    )
    accounts = _table(
        "accounts",
        {
            "account_id": acc_ids,
            "name": _ids("Co ", n_acc),
            "owner": owners[rng.integers(0, 4000, n_acc)],
            "created_at": (start + rng.integers(0, int(span), n_acc).astype("timedelta64[D]")).astype("datetime64[ns]"),
        },
    )
    hist = hist.sort_values(["opportunity_id", "changed_at"], kind="stable").reset_index(drop=True)
    tables = {"opportunities": opps, "history": hist, "activities": acts, "contacts": contacts, "accounts": accounts}
    return CRM(tables, as_of_date=AS_OF)


def main() -> None:
    n_opp = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    n_act = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000_000
    t = time.perf_counter()
    crm = synthesize(n_opp, n_act)
    gc.collect()
    print(f"synthesized {crm} in {time.perf_counter() - t:.1f} s; peak RSS {_rss_gb():.2f} GB")
    _reset_peak()
    print(f"memory held by the CRM tables: {_current_gb():.2f} GB (peak counter reset)")
    t, c = time.perf_counter(), time.process_time()
    actions = fk.hygiene.review(crm)
    t_review, c_review = time.perf_counter() - t, time.process_time() - c
    print(
        f"review (all checks): {len(actions):,} actions in {t_review:.1f} s wall, {c_review:.1f} s CPU; "
        f"peak RSS {_rss_gb():.2f} GB"
    )
    print(actions["problem"].value_counts().to_string())
    t = time.perf_counter()
    sc = fk.hygiene.scorecard(crm)
    print(
        f"scorecard: {sc['owner'].nunique():,} owners in {time.perf_counter() - t:.1f} s; peak RSS {_rss_gb():.2f} GB"
    )


if __name__ == "__main__":
    main()
