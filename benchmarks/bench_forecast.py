"""Forecast benchmarks: speed at scale and backtest accuracy on the sample generator.

Usage::

    python benchmarks/bench_forecast.py speed [n_open]          # forecast of 100,000 open deals
    python benchmarks/bench_forecast.py backtest                # 8 quarters x 4 checkpoints on the sample
    python benchmarks/bench_forecast.py accuracy SCENARIO N_REPS SEEDS CHECKPOINTS
        # e.g. accuracy baseline 72 0,1,2 week1,week4,week8,week13
    python benchmarks/bench_forecast.py decompose SCENARIO N_REPS SEEDS
        # week-4 error of the calibrated method with the true p_win or the true p_in_period swapped in

Prints seconds (wall and CPU) and peak memory (ru_maxrss). ``accuracy`` prints the
acceptance figures: median |F - A| / A per method at week 4, the calibrated / oracle
ratio, P10-P90 coverage, the reps' commit bias. The oracle is the generator's
``GroundTruth.p_win_by`` (the true probability of winning by the period end).

Figures (CPU seconds, 2-core machine shared with other jobs, so +-20%):

==================================================  ======  =====
                                                    before  after
==================================================  ======  =====
``speed``: forecast(method="crm"), 100k open         1.9     1.2-1.5
``speed``: forecast(method="stage")                  5.1     2.2-3.0
``speed``: forecast(method="model", model=<fitted>)  5.7     2.8-3.6
``speed``: forecast(crm) (win model fitted at 100k)  15.6    9.3-9.5
``speed``: fit_win_model on the sample               6.5     4.2-4.3
``backtest``: 8 quarters x 4 checkpoints + oracle    46-55   27-29
==================================================  ======  =====

"before" is commit 1cb3b3b, "after" the speed pass that followed (same load, paired runs:
min of 3 rounds 1.92 / 5.08 / 5.73 -> 1.19 / 2.18 / 2.81 s). What changed: one BLAS
thread around the small logistic fits and predictions (oversubscribed BLAS threads
made each L-BFGS step ~10x dearer in CPU; same coefficients), the open deals' pushes,
days in stage and segments from factorised ids in one pass, one per-owner simulation
shared by the distribution and the calls table (was two), cache-sized Monte Carlo
chunks. The forecast numbers on data/sample and the backtest frame are identical; at
100k open deals the distribution moves within Monte Carlo noise (see
``forecastkit.forecast.forecast``). Still above 5 s: ``forecast(crm)`` when it has to
fit the win model at 100k deals, of which ~6.4 s is
``forecastkit.probability.features.training_rows``. Of the backtest's ~28 s, ~9 s is
the oracle (``GroundTruth.p_win_by``: a gamma ppf per deal and draw), ~6 s rewinding
snapshots (``CRM.as_of``), ~5.5 s fitting the 8 win models and ~4.5 s their training rows.
"""

from __future__ import annotations

import resource
import sys
import time
import warnings

import numpy as np
import pandas as pd


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(label: str, fn, *a, **k):
    t, c = time.perf_counter(), time.process_time()
    out = fn(*a, **k)
    print(
        f"{label:<48s} wall {time.perf_counter() - t:7.2f} s  cpu {time.process_time() - c:7.2f} s  "
        f"peak {_peak_mb():7.0f} MB"
    )
    return out


# --------------------------------------------------------------------------- speed
def _synthetic_crm(n_open: int, n_closed: int, seed: int = 0):
    """A company with ``n_open`` open and ``n_closed`` closed deals, two history rows each."""
    from forecastkit.data.crm import CRM

    rng = np.random.default_rng(seed)
    pb_stages = np.array(["to_contact", "qualification", "discovery", "proposal", "negotiation"], dtype=object)
    n = n_open + n_closed
    as_of = pd.Timestamp("2026-11-20")
    created = as_of - pd.to_timedelta(rng.integers(5, 720, n), unit="D")
    stage0 = rng.integers(0, 4, n)
    moved = created + pd.to_timedelta(rng.integers(1, 60, n), unit="D")
    moved = moved.where(moved < as_of, as_of - pd.Timedelta(days=1))
    is_open = np.arange(n) < n_open
    won = ~is_open & (rng.random(n) < 0.3)
    stage1 = np.where(is_open, pb_stages[np.minimum(stage0 + 1, 4)], np.where(won, "won", "lost"))
    close = moved + pd.to_timedelta(rng.integers(0, 150, n), unit="D")
    close = np.where(is_open, close, moved)
    amount = np.round(np.exp(rng.normal(9.5, 1.0, n)), -2)
    ids = np.char.add("D", np.arange(n).astype(str)).astype(object)
    owners = np.char.add("rep", rng.integers(0, 400, n).astype(str)).astype(object)
    opps = pd.DataFrame(
        {
            "opportunity_id": ids,
            "owner": owners,
            "team": "t",
            "created_at": created,
            "close_date": close,
            "amount": amount,
            "stage": stage1,
            "status": np.where(is_open, "open", stage1),
            "closed_at": pd.Series(moved).where(~is_open),
            "forecast_category": rng.choice(["commit", "best_case", "pipeline", "omitted"], n),
        }
    )
    hist = pd.concat(
        [
            pd.DataFrame(
                {
                    "opportunity_id": ids,
                    "changed_at": created,
                    "stage": pb_stages[stage0],
                    "amount": amount,
                    "close_date": pd.Series(close) - pd.Timedelta(days=20),
                }
            ),
            pd.DataFrame(
                {"opportunity_id": ids, "changed_at": moved, "stage": stage1, "amount": amount, "close_date": close}
            ),
        ]
    ).sort_values(["opportunity_id", "changed_at"], kind="stable")
    return CRM.from_tables({"opportunities": opps, "history": hist}, as_of=as_of)


def speed(n_open: int = 100_000) -> None:
    from forecastkit.forecast.forecast import forecast
    from forecastkit.forecast.montecarlo import simulate_bookings

    crm = _timed(f"build synthetic CRM ({n_open:,} open deals)", _synthetic_crm, n_open, n_open // 2)
    rng = np.random.default_rng(0)
    a, p = rng.lognormal(9.5, 1.0, n_open), rng.uniform(0, 0.6, n_open)
    _timed("simulate_bookings (10,000 draws)", simulate_bookings, a, p, n_sims=10_000, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in ("crm", "stage"):
            f = _timed(f"forecast(method={method!r}) with distribution", forecast, crm, method=method)
            print("   ", f.distribution[["expected", "p10", "p50", "p90"]].round(0).to_dict("records")[0])
        from forecastkit.data.sample import generate
        from forecastkit.forecast.forecast import fit_win_model

        s = generate("baseline", seed=0)
        model = _timed("fit_win_model on the sample (not at scale)", fit_win_model, s.crm)
        _timed("forecast(method='model', model=<fitted>)", forecast, crm, method="model", model=model)
        _timed("forecast(crm): model method, win model fitted here", forecast, crm)


def backtest_speed() -> None:
    from forecastkit.data.sample import generate
    from forecastkit.forecast.backtest import backtest

    s = _timed("generate baseline sample", generate, "baseline", seed=0)
    crm = _timed("load as CRM", lambda: s.crm)
    bt = _timed("backtest 8 quarters x 4 checkpoints, 6 methods + oracle", backtest, crm, truth=s.truth)
    print(bt.groupby(["checkpoint", "method"])["abs_pct_error"].median().unstack().round(3).to_string())


# --------------------------------------------------------------------------- accuracy
def accuracy(scenario: str, n_reps: int, seeds: list[int], checkpoints: tuple[str, ...]) -> pd.DataFrame:
    from forecastkit.data.sample import generate
    from forecastkit.forecast.backtest import backtest

    frames = []
    for seed in seeds:
        s = generate(scenario, seed=seed, n_reps=n_reps)
        crm = s.crm
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bt = _timed(
                f"{scenario} seed {seed} n_reps {n_reps} backtest",
                backtest,
                crm,
                truth=s.truth,
                checkpoints=checkpoints,
                seed=seed,
            )
        frames.append(bt.assign(seed=seed))
    allbt = pd.concat(frames, ignore_index=True)
    allbt.to_pickle(f"/tmp/bench_forecast_{scenario}_{n_reps}_{'-'.join(map(str, seeds))}.pkl")
    w4 = allbt[allbt["checkpoint"] == "week4"]
    med = w4.groupby(["seed", "method"])["abs_pct_error"].median().unstack()
    med["model/oracle"] = med["model"] / med["oracle"]
    bias = (
        w4.groupby(["seed", "method"])
        .apply(lambda g: (g["forecast"] - g["actual"]).sum() / g["actual"].sum(), include_groups=False)
        .unstack()
    )
    cov = allbt[allbt["method"] == "model"].groupby("seed")["covered"].mean()
    print("\nmedian |F - A| / A at week4, per seed:\n", med.round(3).to_string())
    print("\nbias sum(F - A) / sum(A) at week4, per seed:\n", bias.round(3).to_string())
    print("\nmodel P10-P90 coverage over all checkpoints, per seed:\n", cov.round(3).to_string())
    cov4 = w4[w4["method"] == "model"].groupby("seed")["covered"].mean()
    cols = ["model", "oracle", "model/oracle", "stage", "crm", "run_rate", "commit", "best_case", "call_commit"]
    table = med.reindex(columns=cols).assign(coverage=cov, coverage_week4=cov4)
    print("\nacceptance table (week 4; coverage over all checkpoints and at week 4):\n", table.round(3).to_string())
    pooled = allbt[allbt["method"] == "model"]["covered"]
    print(f"pooled coverage: {pooled.mean():.3f} ({int(pooled.sum())}/{pooled.notna().sum()})")
    print(
        "\npooled over seeds, median |F - A| / A at week4:\n",
        w4.groupby("method")["abs_pct_error"].median().round(3).to_string(),
    )
    return allbt


# --------------------------------------------------------------------------- decomposition
def decompose(scenario: str, n_reps: int, seeds: list[int], checkpoint: str = "week4") -> pd.DataFrame:
    """Which factor of ``p_win x p_in_period`` carries the calibrated method's excess error over the oracle.

    Per quarter (8) at the checkpoint: the calibrated forecast, the oracle, and two hybrids -
    the true ``p_win`` (``GroundTruth.p_win``) with our ``p_in_period``, and our ``p_win`` with the
    true ``p_in_period`` (``p_win_by / p_win``). Also, per segment, our / true amount-weighted
    ``p_win`` (weights amount x true p_in_period) and ``p_in_period`` (weights amount x true p_win).
    """
    from forecastkit.data.sample import generate
    from forecastkit.forecast.backtest import _Context, _win_rows, _won_amount, checkpoint_date, past_periods
    from forecastkit.forecast.forecast import fit_win_model, win_probabilities
    from forecastkit.forecast.slips import slip_rows

    rows, seg_rows = [], []
    for seed in seeds:
        s = generate(scenario, seed=seed, n_reps=n_reps)
        crm, truth = s.crm, s.truth
        plan = [(p, checkpoint_date(p, checkpoint)) for p in past_periods(crm, 8)]
        first_d, last_d = plan[0][1], plan[-1][1]
        sc = slip_rows(crm, "quarter", lookback=f"{(crm.as_of_date - first_d).days + 1095}D", until=last_d)
        wc = _win_rows(crm, first_d, last_d)
        o = crm.opportunities
        won = o[o["status"] == "won"]
        seg = o.set_index("opportunity_id")["segment"]
        for per, d in plan:
            snap = crm.as_of(d)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ctx = _Context(snap, per, sc, 4)
                pw, pin = win_probabilities(snap, "model", model=fit_win_model(snap, rows=wc)), ctx.p_in
            ids = snap.open_deals["opportunity_id"].to_numpy(object)
            a = snap.open_deals["amount"].to_numpy(float)
            at = d + pd.Timedelta(days=1)
            tpw = np.nan_to_num(truth.p_win(ids, at))
            tpin = np.where(tpw > 0, np.nan_to_num(truth.p_win_by(ids, at, per.last_day)) / np.maximum(tpw, 1e-12), 0)
            base = _won_amount(snap, per) + ctx.new.expected
            actual = float(won.loc[per.contains(won["closed_at"]).fillna(False).to_numpy(bool), "amount"].sum())
            fc = {
                "model": pw * pin,
                "oracle": tpw * tpin,
                "true_win_our_slip": tpw * pin,
                "our_win_true_slip": pw * tpin,
            }
            rows.append(
                {
                    "seed": seed,
                    "period": per.label,
                    **{k: abs(base + (a * v).sum() - actual) / actual for k, v in fc.items()},
                }
            )
            seg_rows.append(
                pd.DataFrame(
                    {
                        "seed": seed,
                        "segment": seg.reindex(ids).to_numpy(),
                        "pw": a * pw * tpin,
                        "tpw": a * tpw * tpin,
                        "pin": a * tpw * pin,
                        "tpin": a * tpw * tpin,
                    }
                )
            )
    res = pd.DataFrame(rows)
    print(f"\nmedian |F - A| / A at {checkpoint}, per seed:\n", res.groupby("seed").median(numeric_only=True).round(3))
    g = pd.concat(seg_rows).groupby(["seed", "segment"]).sum()
    ratios = pd.DataFrame({"p_win ours/true": g["pw"] / g["tpw"], "p_in_period ours/true": g["pin"] / g["tpin"]})
    print("\nper segment, amount-weighted:\n", ratios.round(3).to_string())
    return res


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "speed"
    if mode == "speed":
        speed(int(sys.argv[2]) if len(sys.argv) > 2 else 100_000)
    elif mode == "backtest":
        backtest_speed()
    elif mode == "accuracy":
        accuracy(sys.argv[2], int(sys.argv[3]), [int(x) for x in sys.argv[4].split(",")], tuple(sys.argv[5].split(",")))
    elif mode == "decompose":
        decompose(sys.argv[2], int(sys.argv[3]), [int(x) for x in sys.argv[4].split(",")])
    else:
        raise SystemExit(f"unknown mode {mode!r}; use speed, backtest, accuracy or decompose")
