"""Benchmark: win/loss drivers on 200,000 closed deals with 30 features.

Builds a synthetic CRM with numpy (200,000 deals created in qualification and closed,
400,000 history rows, field history for the qualification fields, about 1,000,000
activities; canonical dtypes, no validation), the outcome drawn from a logit with known
effects, and times :func:`forecastkit.drivers` at ``qualification`` with 30 of the 31
registered features (all but ``qualification_completeness``, the mean of the ``*_known``
flags): the feature extraction as of each deal's exit, the statsmodels logit on every row
and the permutation importance (gradient boosting on a 20,000-row subsample, 5 repeats).

Wall and CPU seconds are printed; peak memory is the process's peak resident set size
(``ru_maxrss``, which includes the synthetic data) and the tracemalloc peak of the call.
``--profile`` also prints the cProfile of the call (CPU-time clock, top 25 by cumulative time).

Run: ``.venv/bin/python benchmarks/bench_winloss.py [n_deals] [--profile]``. Target: under 30 s
on 2 cores. The work is single-threaded (BLAS and OpenMP limited to one thread), so on an idle
machine wall is about CPU; the CPU seconds are the figure to compare on a busy one.

Measured (200,000 deals, shared 2-core machine at load 17-20, old and new code run side by
side): drivers 25.7 s CPU before the speed-ups, 19.2 s after; peak RSS 1465 -> 1269 MB,
tracemalloc peak 723 -> 597 MB. The cProfile before: permutation importance 16.5 s (a third of
it scikit-learn's checks of a DataFrame and of the "roc_auc" scorer), features 7.5 s,
statsmodels 7.4 s (3.4 s importing ``statsmodels.api``, 1.8 s its rank check), design 3.4 s;
profiles inflate CPU by about a fifth. The odds-ratio table is identical and the importances
equal to 1e-16. Wall seconds on that machine (130-200 s) measure the load, not the code.
"""

from __future__ import annotations

import cProfile
import pstats
import resource
import sys
import time
import tracemalloc
import warnings

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.data.schema import TABLES
from forecastkit.winloss.drivers import drivers
from forecastkit.winloss.features import FEATURES

T0 = pd.Timestamp("2022-01-01")


def _conform(name: str, cols: dict[str, object], n: int) -> pd.DataFrame:
    out = {}
    for c in TABLES[name].columns:
        v = cols.get(c.name)
        if v is None:
            v = np.full(n, None, dtype=object) if c.kind == "str" else np.full(n, np.nan)
            if c.kind == "date":
                v = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
        if c.kind == "str":
            out[c.name] = pd.array(np.asarray(v, dtype=object), dtype="string")
        elif c.kind == "bool":
            out[c.name] = pd.array(v, dtype="boolean")
        else:
            out[c.name] = v
    return pd.DataFrame(out)


def synthetic_crm(n: int, seed: int = 0) -> CRM:
    rng = np.random.default_rng(seed)
    seg = rng.choice(["smb", "mid_market", "enterprise"], n, p=[0.5, 0.35, 0.15])
    src = rng.choice(["inbound", "outbound", "partner", "event", "referral"], n)
    prod = rng.choice(["core", "analytics", "integrations", "services"], n)
    owner_i = rng.integers(0, 60, n)
    owner = np.array([f"rep {i:02d}" for i in range(60)], dtype=object)[owner_i]
    team = np.array([f"team {i // 6}" for i in range(60)], dtype=object)[owner_i]
    known = {
        f: rng.random(n) < p
        for f, p in (
            ("budget", 0.8),
            ("decision_maker", 0.6),
            ("need", 0.7),
            ("timing", 0.5),
            ("metrics", 0.4),
            ("decision_criteria", 0.3),
            ("decision_process", 0.3),
            ("pain", 0.6),
            ("champion", 0.3),
        )
    }
    comp = rng.random(n) < 0.35
    disc = np.where(rng.random(n) < 0.45, 0.0, np.round(rng.uniform(0.03, 0.3, n), 2))
    logit = -1.5 + 0.8 * known["champion"] + 0.5 * known["decision_maker"] - 0.6 * comp - 0.5 * (seg == "enterprise")
    won = rng.random(n) < 1 / (1 + np.exp(-logit))
    created = T0 + pd.to_timedelta(rng.uniform(0, 1200, n), unit="D")
    dwell = pd.to_timedelta(rng.gamma(2, 10, n) * np.where(won, 1, 2), unit="D")
    closed = created + dwell
    ids = np.char.add("O", np.arange(n).astype(str)).astype(object)
    amount = np.round(np.exp(rng.normal(10, 1, n)), -2)
    opp = {
        "opportunity_id": ids,
        "owner": owner,
        "team": team,
        "segment": seg,
        "source": src,
        "product": prod,
        "created_at": created.to_numpy(),
        "close_date": closed.normalize().to_numpy(),
        "amount": amount,
        "stage": np.where(won, "won", "lost").astype(object),
        "status": np.where(won, "won", "lost").astype(object),
        "closed_at": closed.normalize().to_numpy(),
        "competitor": np.where(comp, "Globex", None),
        "discount": disc,
        "budget": np.where(known["budget"], amount, np.nan),
        **{f: np.where(known[f], "x", None) for f in known if f not in ("budget", "timing")},
        "timing": np.where(known["timing"], closed.to_numpy(), np.datetime64("NaT")).astype("datetime64[ns]"),
    }
    hist = {
        "opportunity_id": np.r_[ids, ids],
        "changed_at": np.r_[created.to_numpy(), closed.to_numpy()],
        "stage": np.r_[np.full(n, "qualification", dtype=object), opp["stage"]],
        "amount": np.r_[amount, amount],
        "close_date": np.r_[closed.normalize().to_numpy(), closed.normalize().to_numpy()],
    }
    order = np.lexsort((hist["changed_at"], hist["opportunity_id"]))
    hist = {k: v[order] for k, v in hist.items()}
    fh_rows = [(ids[m], created[m].to_numpy() + np.timedelta64(3600, "s"), f) for f, m in known.items()]
    fh = {
        "opportunity_id": np.concatenate([r[0] for r in fh_rows]),
        "changed_at": np.concatenate([r[1] for r in fh_rows]),
        "field": np.concatenate([np.full(len(r[0]), r[2], dtype=object) for r in fh_rows]),
        "new_value": np.concatenate([np.full(len(r[0]), "x", dtype=object) for r in fh_rows]),
    }
    k = rng.poisson(np.where(won, 6, 4))
    ai = np.repeat(np.arange(n), k)
    due = created.to_numpy()[ai] + (dwell.to_numpy()[ai] * rng.random(len(ai))).astype("timedelta64[ns]")
    acts = {
        "activity_id": np.char.add("A", np.arange(len(ai)).astype(str)).astype(object),
        "opportunity_id": ids[ai],
        "owner": owner[ai],
        "type": rng.choice(["call", "email", "visit", "meeting", "social"], len(ai)),
        "created_at": due,
        "due_at": due,
        "done_at": due,
    }
    m = len(ai)
    tables = {
        "opportunities": _conform("opportunities", opp, n),
        "history": _conform("history", hist, 2 * n),
        "field_history": _conform("field_history", fh, len(fh["opportunity_id"])),
        "activities": _conform("activities", acts, m),
    }
    return CRM(tables, as_of_date=pd.Timestamp("2025-12-31"))


def main(n: int = 200_000, profile: bool = False) -> None:
    t = time.perf_counter()
    crm = synthetic_crm(n)
    print(
        f"synthetic CRM: {n:,} deals, {len(crm.history):,} history rows, {len(crm.field_history):,} field changes, "
        f"{len(crm.activities):,} activities in {time.perf_counter() - t:.1f} s"
    )
    feats = [f for f in FEATURES if f != "qualification_completeness"]
    assert len(feats) == 30
    prof = cProfile.Profile(time.process_time) if profile else None
    w0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if prof is not None:
            prof.enable()
        res = drivers(crm, at="qualification", features=feats)
        if prof is not None:
            prof.disable()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    if prof is not None:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    print(
        f"drivers: {res.n_deals:,} deals, {len(res.table)} terms, method {res.method}: "
        f"{wall:.1f} s wall, {cpu:.1f} s CPU"
    )
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        drivers(crm, at="qualification", features=feats, importance=False)
    print(f"tracemalloc peak of one call (without importance): {tracemalloc.get_traced_memory()[1] / 2**20:.0f} MB")
    tracemalloc.stop()
    print(res.table.head(8)[["feature", "level", "odds_ratio", "ci_low", "ci_high", "importance"]].round(3))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--profile"]
    main(int(args[0]) if args else 200_000, profile="--profile" in sys.argv[1:])
