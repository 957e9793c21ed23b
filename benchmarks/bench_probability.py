"""Benchmark: stage probabilities at scale, and WinModel.predict_proba on many open deals.

Builds a synthetic CRM with numpy (1,000,000 opportunities, about 6,000,000 history
rows, canonical dtypes, no validation) and times :func:`forecastkit.stage_probabilities`
(overall, by segment, by owner) plus :func:`forecastkit.stage_age_probabilities`.
Wall and CPU seconds are printed (on a shared machine CPU seconds are the fairer
figure). Peak memory is the process's peak resident set size (``ru_maxrss``, which includes
the synthetic data itself) and, in a separate untimed run, the tracemalloc peak of one call.

Run: ``.venv/bin/python benchmarks/bench_probability.py [n_opportunities]``.
Targets: under 10 s and under 4 GB for 1M opportunities / 6M history rows.

``.venv/bin/python benchmarks/bench_probability.py predict [n_open]`` times
``WinModel.predict_proba`` (features from the snapshot + the model) on ~100,000 open deals.

``.venv/bin/python benchmarks/bench_probability.py accuracy [n_seeds]`` instead measures the
acceptance numbers on the sample company: interval coverage of the true (stage, segment)
win probabilities, and held-out Brier / skill / ECE of the model, stage history, CRM
defaults and the oracle on the baseline, optimistic and stage_only scenarios.

Measured 2026-11-25 (2 cores, load average 15-23, so wall seconds are inflated 5-10x;
CPU seconds), 1,000,000 opportunities / 6,292,757 history rows:

=====================================  ==============  ==============
step                                   before (CPU s)  after (CPU s)
=====================================  ==============  ==============
stage_probabilities(lookback='730D')   4.7             2.4
stage_probabilities(by='owner')        -               2.8
stage_age_probabilities()              -               10.3
peak RSS of the process (data incl.)   2.2 GB          3.8 GB (with stage_age)
tracemalloc peak of one call           -               0.44 GB
WinModel.predict_proba, 100,172 open   2.35            2.05 (model alone 0.3-0.4)
=====================================  ==============  ==============

On the generated 1M company (bench_scale's snapshot, 3.4M history rows) against the same
counts in DuckDB SQL, same process, CPU seconds: before 3.51 / 2.86 vs DuckDB 1.80 / 1.69
(1.7-2.0x); after 2.58 / 2.42 vs DuckDB 1.94 / 1.63 (1.3-1.5x). Counts equal.
"""

from __future__ import annotations

import resource
import sys
import time
import tracemalloc
import warnings

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.playbook import Playbook

STAGES = ("to_contact", "qualification", "discovery", "proposal", "negotiation")


def synthetic_crm(n: int = 1_000_000, rows_per_deal: float = 6.0, seed: int = 0) -> CRM:
    """A CRM of ``n`` deals with about ``rows_per_deal * n`` history rows (stage moves plus other changes)."""
    rng = np.random.default_rng(seed)
    as_of = pd.Timestamp("2026-06-30")
    created = as_of - pd.to_timedelta(rng.uniform(10, 1000, n), unit="D")
    entry = rng.choice(2, n, p=[0.6, 0.4])
    outcome = rng.choice(3, n, p=[0.25, 0.45, 0.30])  # 0 won, 1 lost, 2 open
    last = np.where(outcome == 0, 4, np.minimum(entry + rng.geometric(0.45, n) - 1, 4))
    n_stage = last - entry + 1 + (outcome < 2)  # open-stage rows + the closing row
    n_rows = np.maximum(n_stage, rng.poisson(rows_per_deal, n))
    deal = np.repeat(np.arange(n), n_rows)
    k = np.arange(n_rows.sum()) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    # row k of a deal moves to the next stage while stage rows remain; extra rows repeat the stage
    frac = k / np.maximum(n_rows[deal] - 1, 1)
    step = np.floor(frac * (n_stage[deal] - 1) + 1e-9).astype(int)
    order = entry[deal] + step
    closing = (outcome[deal] < 2) & (step == n_stage[deal] - 1)
    names = np.array(STAGES + ("won", "lost"), dtype=object)
    stage = names[np.minimum(order, 4)]
    stage[closing] = np.where(outcome[deal[closing]] == 0, "won", "lost")
    span = rng.uniform(5, 300, n)
    changed = created[deal] + pd.to_timedelta(frac * span[deal], unit="D")
    changed = pd.DatetimeIndex(np.minimum(changed.to_numpy(), np.datetime64(as_of)))
    ids = pd.array(np.char.add("O", np.arange(n).astype(str).astype(object).astype(str)), dtype="string")
    amount = np.round(rng.lognormal(10, 1, n), -2)
    hist = pd.DataFrame(
        {
            "opportunity_id": ids[deal],
            "changed_at": changed,
            "stage": pd.array(stage, dtype="string"),
            "amount": amount[deal],
            "close_date": (created + pd.Timedelta(days=120))[deal],
            "forecast_category": pd.array(np.full(len(deal), "pipeline", dtype=object), dtype="string"),
        }
    )
    last_row = np.cumsum(n_rows) - 1
    final_stage = stage[last_row]
    status = np.where(outcome == 0, "won", np.where(outcome == 1, "lost", "open"))
    closed_at = np.where(outcome < 2, changed.to_numpy()[last_row], np.datetime64("NaT"))
    seg = np.array(["smb", "mid_market", "enterprise"], dtype=object)[rng.choice(3, n, p=[0.5, 0.35, 0.15])]
    owner = np.char.add("rep", rng.integers(0, 400, n).astype(str)).astype(object)
    opps = pd.DataFrame(
        {
            "opportunity_id": ids,
            "owner": pd.array(owner, dtype="string"),
            "segment": pd.array(seg, dtype="string"),
            "created_at": created,
            "close_date": created + pd.Timedelta(days=120),
            "amount": amount,
            "stage": pd.array(final_stage, dtype="string"),
            "status": pd.array(status, dtype="string"),
            "closed_at": pd.to_datetime(closed_at),
        }
    )
    opps = _with_all_columns(opps)
    return CRM({"opportunities": opps, "history": hist}, as_of_date=as_of, playbook=Playbook())


def _with_all_columns(opps: pd.DataFrame) -> pd.DataFrame:
    from forecastkit.data.validate import empty_table

    tmpl = empty_table("opportunities")
    out = {c: opps[c] if c in opps else pd.Series(pd.array([None] * len(opps), dtype=tmpl[c].dtype)) for c in tmpl}
    return pd.DataFrame(out)


def _timed(label: str, fn, trace: bool = False):
    """Run ``fn``; print wall seconds and the process peak RSS (and the traced peak with ``trace``)."""
    if trace:  # tracemalloc slows pandas down a lot: a separate run, for the allocation peak only
        tracemalloc.start()
        fn()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"{label:<48} tracemalloc peak of the call {peak / 1024**3:5.2f} GB")
        return None
    t0, c0 = time.perf_counter(), time.process_time()
    res = fn()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"{label:<48} {dt:7.2f} s wall  {cpu:7.2f} s CPU   process peak RSS so far {rss:5.2f} GB")
    return res


def main(n: int = 1_000_000) -> None:
    import forecastkit as fk

    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    crm = synthetic_crm(n)
    print(
        f"built {len(crm.opportunities):,} opportunities and {len(crm.history):,} history rows "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    res = _timed("stage_probabilities(lookback=None)", lambda: fk.stage_probabilities(crm, lookback=None))
    print(res.round(3).to_string(index=False))
    _timed("stage_probabilities(lookback='730D')", lambda: fk.stage_probabilities(crm))
    _timed("stage_probabilities(by='segment')", lambda: fk.stage_probabilities(crm, by="segment"))
    _timed("stage_probabilities(by='owner')", lambda: fk.stage_probabilities(crm, by="owner"))
    _timed("stage_age_probabilities()", lambda: fk.stage_age_probabilities(crm))
    _timed("stage_probabilities(lookback=None)", lambda: fk.stage_probabilities(crm, lookback=None), trace=True)


def predict_speed(n_open: int = 100_000) -> None:
    """WinModel.predict_proba on a snapshot with about ``n_open`` open deals (features + model)."""
    import forecastkit as fk
    from forecastkit.probability.features import point_in_time_features

    warnings.simplefilter("ignore")
    crm = synthetic_crm(int(n_open / 0.30))
    n = int((crm.opportunities["status"] == "open").sum())
    feats = point_in_time_features(crm)
    rng = np.random.default_rng(0)
    train = feats.sample(20_000, random_state=0).assign(
        as_of=crm.as_of_date, won=lambda d: (rng.random(len(d)) < 0.2 + 0.1 * d["stage_order"]).astype(int)
    )
    model = fk.WinModel().fit_rows(train)
    print(f"snapshot with {n:,} open deals and {len(crm.history):,} history rows")
    _timed(f"WinModel.predict_proba ({n:,} open deals)", lambda: model.predict_proba(crm))
    _timed("  of which the model alone (predict_rows)", lambda: model.predict_rows(feats))


def accuracy(n_seeds: int = 5) -> None:
    """Acceptance numbers on generated companies (several seeds)."""
    import forecastkit as fk
    from forecastkit.data.sample import generate
    from forecastkit.probability.calibration import holdout_predictions

    warnings.simplefilter("ignore")
    pd.set_option("display.width", 200)
    hits = cells = 0
    rows = []
    for scenario in ("baseline", "optimistic", "stage_only"):
        for seed in range(n_seeds if scenario == "baseline" else min(n_seeds, 3)):
            s = generate(scenario, seed=seed)
            crm, truth = s.crm, s.truth
            t = fk.stage_probabilities(crm, by="segment")
            true = truth.stage_win_probability
            m = t.merge(true[true["segment"] != "all"], on=["stage", "segment"], suffixes=("", "_true"))
            cover = (m["ci_lower"] <= m["p_win_true"]) & (m["p_win_true"] <= m["ci_upper"])
            if scenario == "baseline":
                hits, cells = hits + int(cover.sum()), cells + len(m)
            t0 = time.perf_counter()
            pred = holdout_predictions(crm, crm.as_of_date - pd.Timedelta(days=545), oracle=truth.p_win)
            sc = fk.calibration_report(pred).scores.set_index("source")
            rows.append(
                {
                    "scenario": scenario,
                    "seed": seed,
                    "coverage": cover.mean(),
                    "rows": len(pred),
                    "seconds": time.perf_counter() - t0,
                    **{f"brier_{k}": sc.loc[k, "brier"] for k in ("model", "stage", "crm", "oracle")},
                    "stage_vs_crm": sc.loc["stage", "brier_skill_vs_crm"],
                    "model_vs_stage": sc.loc["model", "brier_skill_vs_stage"],
                    "ece_model": sc.loc["model", "ece"],
                    "auc_model": sc.loc["model", "roc_auc"],
                    "auc_oracle": sc.loc["oracle", "roc_auc"],
                }
            )
            print(pd.DataFrame(rows[-1:]).round(4).to_string(index=False, header=len(rows) == 1), flush=True)
    print(f"baseline interval coverage of (stage, segment) cells: {hits}/{cells} = {hits / cells:.3f}")
    print(pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "predict":
        predict_speed(int(sys.argv[2]) if len(sys.argv) > 2 else 100_000)
    elif len(sys.argv) > 1 and sys.argv[1] == "accuracy":
        accuracy(int(sys.argv[2]) if len(sys.argv) > 2 else 5)
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
