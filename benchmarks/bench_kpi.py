"""Benchmark: the four dashboards for every rep on 1,000,000 opportunities and 2,000,000 orders.

Builds the synthetic CRM of ``_synthetic.py`` (shared with ``bench_hygiene.py``):
4,000 reps in teams of six, 1,000,000 deals with 1-5 history rows each, 2,000,000
orders of customers ordering on a regular cycle, 3,000,000 activities, accounts,
contacts, targets. Then times ``dashboards(crm, which, level="rep")`` for each of the
four dashboards (every rep in one pass) and one single-rep ``dashboard`` call.

With ``--snapshot PATH`` it times the same calls on a pickled loaded CRM instead (the
generator's company, e.g. ``/tmp/forecastkit-bench/1M/snapshot.pkl`` written by
``bench_scale.py``; run the 1M one under ``flock /tmp/fk-1m.lock``).

Prints wall and CPU seconds per dashboard (CPU seconds are the figure to compare on a
busy machine), the resident memory before the dashboards (the snapshot) and the peak
during them (Linux ``VmHWM``, reset once the tables are built or loaded), and the
increment. Target: under 30 s in total and under 6 GB on 2 cores.

Run::

    .venv/bin/python benchmarks/bench_kpi.py [n_opportunities] [n_orders] [n_activities]
    .venv/bin/python benchmarks/bench_kpi.py --snapshot /tmp/forecastkit-bench/100k/snapshot-<digest>.pkl
"""

from __future__ import annotations

import argparse
import gc
import pickle
import time
import warnings

from _memory import current_gb, peak_gb, reset_peak
from _synthetic import synthesize

from forecastkit.kpi.dashboards import DASHBOARDS, dashboard, dashboards


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n_opportunities", nargs="?", type=int, default=1_000_000)
    ap.add_argument("n_orders", nargs="?", type=int, default=2_000_000)
    ap.add_argument("n_activities", nargs="?", type=int, default=3_000_000)
    ap.add_argument("--snapshot", help="a pickled loaded CRM to time instead of the synthetic one")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.snapshot:
        warnings.simplefilter("ignore")
        with open(args.snapshot, "rb") as f:
            crm = pickle.load(f)
        what = f"loaded {args.snapshot}"
    else:
        crm = synthesize(args.n_opportunities, args.n_activities, args.n_orders, targets=True)
        what = "synthesized"
    print(
        f"{what}: {len(crm.opportunities):,} opportunities, {len(crm.history):,} history rows, "
        f"{len(crm.orders):,} orders, {len(crm.activities):,} activities in {time.perf_counter() - t0:.1f} s"
    )
    gc.collect()
    before = current_gb()
    reset_peak()
    wall = cpu = 0.0
    for which in DASHBOARDS:
        t, c = time.perf_counter(), time.process_time()
        res = dashboards(crm, which, level="rep")
        dt, dc = time.perf_counter() - t, time.process_time() - c
        wall, cpu = wall + dt, cpu + dc
        n_tiles = max((len(d.tiles) for d in res.values()), default=0)
        print(f"{which:15s} {len(res):5d} reps x {n_tiles} tiles: {dt:6.1f} s wall, {dc:6.1f} s CPU")
        del res
    peak = peak_gb()
    print(
        f"all four dashboards for every rep: {wall:.1f} s wall, {cpu:.1f} s CPU; memory {before:.2f} GB before "
        f"(the snapshot), peak {peak:.2f} GB during the dashboards (+{peak - before:.2f} GB)"
    )
    t = time.perf_counter()
    rep = str(crm.opportunities["owner"].dropna().min()) if args.snapshot else "rep 0001"
    for which in DASHBOARDS:
        dashboard(crm, which, level="rep", who=rep)
    print(f"the four dashboards of one rep (dashboard(who=...)): {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
