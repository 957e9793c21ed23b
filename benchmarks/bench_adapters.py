"""Benchmark: read a 1,000,000-row Salesforce Opportunity export plus 6,000,000 OpportunityHistory rows.

Writes the two CSV files (Data Loader format: API field names, ``2023-10-28T20:45:25.000+0000``
datetimes, ``true``/``false`` booleans; 0.1% deleted deals) into a folder, then loads them in a
fresh process (``salesforce.read`` + the shared validation, i.e. ``salesforce.load``) and reports
wall and CPU seconds of each part and the peak resident memory of that process.

Target (issue 9): under 60 s and under 8 GB on a 2-core machine.

    python benchmarks/bench_adapters.py [--deals 1000000] [--history-per-deal 6] [--data /tmp/sfbench]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

STAGES = np.array(["Prospecting", "Qualification", "Needs Analysis", "Proposal/Price Quote", "Negotiation/Review"])
PROB = np.array([10, 20, 40, 60, 80])


def _iso(t: np.ndarray) -> np.ndarray:
    return np.char.add(np.datetime_as_string(t.astype("datetime64[s]"), unit="s"), ".000+0000")


def _day(t: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(t.astype("datetime64[s]"), unit="D")


def write_export(folder: Path, n: int, per_deal: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2022-01-01").timestamp()
    created = start + rng.uniform(0, 3 * 365 * 86400, n)
    n_changes = rng.integers(1, 2 * per_deal, n)  # mean about per_deal
    n_changes = np.maximum(1, (n_changes * (per_deal * n) / n_changes.sum()).round().astype(int))
    status = rng.choice(np.array(["open", "won", "lost"]), n, p=[0.2, 0.3, 0.5])
    final = rng.integers(0, 5, n)
    close = created + rng.uniform(10, 200, n) * 86400
    ids = np.char.add("006", np.char.zfill(np.arange(n).astype(str), 15))
    stage_name = np.where(status == "won", "Closed Won", np.where(status == "lost", "Closed Lost", STAGES[final]))
    amount = rng.lognormal(10, 1, n).round(2)
    opp = pa.table(
        {
            "Id": ids,
            "IsDeleted": np.where(rng.random(n) < 0.001, "true", "false"),
            "AccountId": np.char.add("001", np.char.zfill((np.arange(n) // 3).astype(str), 15)),
            "Name": np.char.add("Deal ", np.arange(n).astype(str)),
            "StageName": stage_name,
            "Amount": amount,
            "Probability": np.where(status == "won", 100, np.where(status == "lost", 0, PROB[final])),
            "CloseDate": _day(close),
            "Type": np.full(n, "New Business"),
            "LeadSource": rng.choice(np.array(["Web", "Partner", "Event"]), n),
            "IsClosed": np.where(status == "open", "false", "true"),
            "IsWon": np.where(status == "won", "true", "false"),
            "ForecastCategoryName": np.where(
                status == "won", "Closed", np.where(status == "lost", "Omitted", "Pipeline")
            ),
            "CurrencyIsoCode": np.full(n, "EUR"),
            "OwnerId": np.char.add("005", np.char.zfill(rng.integers(0, 4000, n).astype(str), 15)),
            "CreatedDate": _iso(created),
        }
    )
    op = folder / "Opportunity.csv"
    pacsv.write_csv(opp, op)
    del opp
    # history: n_changes rows per deal, times between creation and close, stages climbing
    idx = np.repeat(np.arange(n), n_changes)
    k = np.arange(len(idx)) - np.repeat(np.cumsum(n_changes) - n_changes, n_changes)
    last = k == np.repeat(n_changes - 1, n_changes)
    frac = k / np.repeat(n_changes, n_changes)
    t = created[idx] + frac * (close[idx] - created[idx])
    st = np.minimum((frac * (final[idx] + 1)).astype(int), final[idx])
    hstage = np.where(last, stage_name[idx], STAGES[st])
    m = len(idx)
    hist = pa.table(
        {
            "Id": np.char.add("008", np.char.zfill(np.arange(m).astype(str), 15)),
            "OpportunityId": ids[idx],
            "CreatedDate": _iso(t),
            "StageName": hstage,
            "Amount": amount[idx],
            "CloseDate": _day(close[idx]),
            "Probability": np.where(last & (status[idx] == "won"), 100, PROB[st]),
            "ForecastCategory": np.where(
                last & (status[idx] != "open"), np.where(status[idx] == "won", "Closed", "Omitted"), "Pipeline"
            ),
            "CurrencyIsoCode": np.full(m, "EUR"),
            "IsDeleted": np.full(m, "false"),
        }
    )
    hp = folder / "OpportunityHistory.csv"
    pacsv.write_csv(hist, hp)
    return op, hp


def _load(op: str, hp: str, queue) -> None:
    from forecastkit.adapters import _common, salesforce

    warnings.simplefilter("ignore")
    t0, c0 = time.perf_counter(), time.process_time()
    export = salesforce.read(op, hp)
    t1, c1 = time.perf_counter(), time.process_time()
    crm = _common.build(export)
    t2, c2 = time.perf_counter(), time.process_time()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kilobytes -> GB
    queue.put(
        (
            t1 - t0,
            c1 - c0,
            t2 - t1,
            c2 - c1,
            peak,
            crm.load_report.summary.to_string(index=False),
            crm.load_report.errors,
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deals", type=int, default=1_000_000)
    ap.add_argument("--history-per-deal", type=int, default=6)
    ap.add_argument("--data", type=Path, default=None, help="folder to keep (and reuse) the generated CSV files")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        op, hp = folder / "Opportunity.csv", folder / "OpportunityHistory.csv"
        if not (op.exists() and hp.exists()):
            t0 = time.perf_counter()
            write_export(folder, args.deals, args.history_per_deal)
            print(f"wrote the export in {time.perf_counter() - t0:.1f} s")
        print(f"{op.name}: {op.stat().st_size / 1e6:.0f} MB, {hp.name}: {hp.stat().st_size / 1e6:.0f} MB")
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        proc = ctx.Process(target=_load, args=(str(op), str(hp), q))
        proc.start()
        read_s, read_cpu, val_s, val_cpu, peak, summary, errors = q.get()
        proc.join()
    print(summary)
    print(f"rejected rows: {errors} (history rows of the deleted deals: 'unknown opportunity')")
    print(f"adapter (read + parse): {read_s:.1f} s wall, {read_cpu:.1f} s CPU")
    print(f"validation (CRM.from_tables): {val_s:.1f} s wall, {val_cpu:.1f} s CPU")
    total = read_s + val_s
    print(f"salesforce.load total: {total:.1f} s wall ({read_cpu + val_cpu:.1f} s CPU), peak RSS {peak:.2f} GB")
    print(f"target: < 60 s and < 8 GB -> {'OK' if total < 60 and peak < 8 else 'MISSED'}")


if __name__ == "__main__":
    main()
