"""Benchmark: the full pipeline review on 1,000,000 opportunities and 10,000,000 activities.

Builds the synthetic CRM of ``_synthetic.py`` (shared with ``bench_kpi.py``), then
times ``fk.hygiene.review`` (every check) and the scorecard. Prints wall and CPU
seconds and the peak resident memory during the review (Linux ``VmHWM`` after
resetting it once the synthetic tables are built; the tables themselves are
included, their synthesis temporaries are not). Target: under 20 s and 6 GB.

Run: ``.venv/bin/python benchmarks/bench_hygiene.py [n_opportunities] [n_activities]``
"""

from __future__ import annotations

import gc
import sys
import time

from _synthetic import current_gb, peak_gb, reset_peak, synthesize

import forecastkit as fk


def main() -> None:
    n_opp = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    n_act = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000_000
    t = time.perf_counter()
    crm = synthesize(n_opp, n_act)
    gc.collect()
    print(f"synthesized {crm} in {time.perf_counter() - t:.1f} s; peak RSS {peak_gb():.2f} GB")
    reset_peak()
    print(f"memory held by the CRM tables: {current_gb():.2f} GB (peak counter reset)")
    t, c = time.perf_counter(), time.process_time()
    actions = fk.hygiene.review(crm)
    t_review, c_review = time.perf_counter() - t, time.process_time() - c
    print(
        f"review (all checks): {len(actions):,} actions in {t_review:.1f} s wall, {c_review:.1f} s CPU; "
        f"peak RSS {peak_gb():.2f} GB"
    )
    print(actions["problem"].value_counts().to_string())
    t, c = time.perf_counter(), time.process_time()
    sc = fk.hygiene.scorecard(crm)
    print(
        f"scorecard: {sc['owner'].nunique():,} owners in {time.perf_counter() - t:.1f} s wall, "
        f"{time.process_time() - c:.1f} s CPU; peak RSS {peak_gb():.2f} GB"
    )


if __name__ == "__main__":
    main()
