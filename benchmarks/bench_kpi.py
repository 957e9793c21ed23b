"""Benchmark: the four dashboards for every rep on 1,000,000 opportunities and 2,000,000 orders.

Builds the synthetic CRM of ``_synthetic.py`` (shared with ``bench_hygiene.py``):
4,000 reps in teams of six, 1,000,000 deals with 1-5 history rows each, 2,000,000
orders of customers ordering on a regular cycle, 3,000,000 activities, accounts,
contacts, targets. Then times ``dashboards(crm, which, level="rep")`` for each of the
four dashboards (every rep in one pass) and one single-rep ``dashboard`` call.

Prints wall and CPU seconds per dashboard and the peak resident memory (Linux
``VmHWM``, reset once the synthetic tables are built, so the tables are included but
not their synthesis temporaries). Target: under 30 s in total and under 6 GB on 2 cores.

Run: ``.venv/bin/python benchmarks/bench_kpi.py [n_opportunities] [n_orders] [n_activities]``
"""

from __future__ import annotations

import gc
import sys
import time

from _synthetic import peak_gb, reset_peak, synthesize

from forecastkit.kpi.dashboards import DASHBOARDS, dashboard, dashboards


def main() -> None:
    n_opp = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    n_ord = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000_000
    n_act = int(sys.argv[3]) if len(sys.argv) > 3 else 3_000_000
    t0 = time.perf_counter()
    crm = synthesize(n_opp, n_act, n_ord, targets=True)
    print(
        f"synthesized {len(crm.opportunities):,} opportunities, {len(crm.history):,} history rows, "
        f"{len(crm.orders):,} orders, {len(crm.activities):,} activities in {time.perf_counter() - t0:.1f} s"
    )
    gc.collect()
    reset_peak()
    wall = cpu = 0.0
    for which in DASHBOARDS:
        t, c = time.perf_counter(), time.process_time()
        res = dashboards(crm, which, level="rep")
        dt, dc = time.perf_counter() - t, time.process_time() - c
        wall, cpu = wall + dt, cpu + dc
        n_tiles = max(len(d.tiles) for d in res.values())
        print(f"{which:15s} {len(res):5d} reps x {n_tiles} tiles: {dt:6.1f} s wall, {dc:6.1f} s CPU")
        del res
    print(f"all four dashboards for every rep: {wall:.1f} s wall, {cpu:.1f} s CPU; peak memory {peak_gb():.2f} GB")
    t = time.perf_counter()
    for which in DASHBOARDS:
        dashboard(crm, which, level="rep", who="rep 0001")
    print(f"the four dashboards of one rep (dashboard(who=...)): {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
