"""Benchmark: the full pipeline review on 1,000,000 opportunities and 10,000,000 activities.

Builds the synthetic CRM of ``_synthetic.py`` (shared with ``bench_kpi.py``), then
times ``fk.hygiene.review`` (every check) and the scorecard. Prints wall and CPU
seconds and the peak resident memory during the review (Linux ``VmHWM`` after
resetting it once the synthetic tables are built; the tables themselves are
included, their synthesis temporaries are not). Target: under 20 s and 6 GB.

With ``--snapshot PATH`` it times the review on a pickled loaded CRM instead (the
benchmark company cached by ``bench_scale.py``, e.g.
``/tmp/forecastkit-bench/1M/snapshot.pkl``; run it under ``flock /tmp/fk-1m.lock``)
and prints the resident memory of the loaded snapshot, the peak during the review
and the increment.

Run: ``.venv/bin/python benchmarks/bench_hygiene.py [n_opportunities] [n_activities]``
or ``.venv/bin/python benchmarks/bench_hygiene.py --snapshot PATH``

Results (``fk.hygiene.review`` on the cached benchmark companies, CPU seconds of the
review alone, 2026-11-25; 2-core machine shared with other jobs, load 5-10, so wall
times are 2-3x the CPU times; memory in GiB from ``VmHWM``):

===============================  ==========================  ==========================
snapshot                         before (f8b1fb1)            after (branch hyg)
===============================  ==========================  ==========================
100k (snapshot-27d132eefd.pkl)   2.8 s CPU                   1.0 s CPU
1M (snapshot-27d132eefd.pkl)     34.6 s CPU (89 s wall),     11.4 s CPU (21 s wall),
                                 peak 5.40 GiB (+2.49)       peak 3.66 GiB (+0.75)
===============================  ==========================  ==========================

1M = 979,726 opportunities, 3.4M history rows, 6.5M activities, 1.9M contacts;
889,582 actions. The loaded snapshot holds 2.91 GiB (4.14 GiB peak while
unpickling, the process peak); "+" is the review's own increment. On the older
snapshot-fb8b625c35.pkl (8.3 GiB once loaded) the same review took 48.6 s CPU before
and 22.0 s CPU after the first half of these changes (at 57b751a).
Branch hyg3 on snapshot-27d132eefd.pkl (1M): 10.9 s CPU (26 s wall at load 5), peak 3.68 GiB
(+0.78), the same 889,582 actions (this company's list is mostly its 836,632 contact rows).

Synthetic CRM (``bench_hygiene.py N_OPP N_ACT``; it has more open deals and
visits than the generator's companies), CPU seconds of the review, load about 6 (200k: three alternating runs of each
version in separate processes; the last two commits of hyg2 were not run at 1M):

==========================  ==========================  ==========================
size                        before (ae1b30e)            after (branch hyg2)
==========================  ==========================  ==========================
200k deals / 2M activities  3.6-3.9 s CPU (first run)   2.8-3.3 s CPU (first run)
1M deals / 10M activities   31.5 s CPU (lead's run),    25.6 s CPU (38 s wall) at
                            peak 3.85 GB                c48549e, peak 3.82 GB (+0.79)
==========================  ==========================  ==========================

1M = 299,562 open deals, 3.0M history rows, 10M activities; 1,204,408 actions.

Branch hyg3 (same synthetic companies; before = main at 1cb3b3b, run in the same hour;
machine load 2.5-5, so CPU seconds are some 10-15 % above a quiet machine's; every output
of the review, the scorecard and each check compared equal before/after on the 200k
company, data/sample, a generated company and the sample with visits and cadence touches
tied to accounts only):

==========================  ==========================  ==========================
size                        before (1cb3b3b)            after (branch hyg3)
==========================  ==========================  ==========================
200k deals / 2M activities  4.2 s CPU                   3.3 s CPU
1M deals / 10M activities   28.7 s CPU (30.3 s wall),   16.4-20.2 s CPU in three runs
                            peak 3.68 GB (+0.65)        (20.8 s wall at load 2.5, 42 s
                                                        at load 5), peak 3.49-3.51 GB
                                                        (+0.46-0.48)
1M, pickled, back to back   29.7 s CPU                  21.2 and 21.9 s CPU
==========================  ==========================  ==========================

What changed: the action list is assembled from each row's position in the open-deal
frame (the deal columns are taken once for all rows: no frame per check, no
missing-value scans); visits are checked for reports before their deal ids are looked
up, and grouped by deal position; a cadence lead's activities are looked up once; the
current stage's entry comes from each deal's last spell by position; account owners
come from the accounts table (deals are read only for accounts without an owner there).
Not always under a 16 s CPU aim on a loaded machine: the rest is spread over per-string work
(the 10M cadence-step column and the visit and cadence deal ids converted to pyarrow and
looked up, the contacts' e-mail and name normalisation, stage spells over 3M history
rows) and the final take of 1.2M rows per text column.
"""

from __future__ import annotations

import gc
import pickle
import sys
import time

from _memory import current_gb, peak_gb, reset_peak
from _synthetic import synthesize

import forecastkit as fk


def _review(crm: fk.CRM) -> None:
    reset_peak()
    before = current_gb()
    print(f"memory held by the CRM tables: {before:.2f} GB (peak counter reset)")
    t, c = time.perf_counter(), time.process_time()
    actions = fk.hygiene.review(crm)
    t_review, c_review = time.perf_counter() - t, time.process_time() - c
    print(
        f"review (all checks): {len(actions):,} actions in {t_review:.1f} s wall, {c_review:.1f} s CPU; "
        f"peak RSS {peak_gb():.2f} GB (+{peak_gb() - before:.2f} GB during the review)"
    )
    print(actions["problem"].value_counts().to_string())


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--snapshot":
        t = time.perf_counter()
        with open(sys.argv[2], "rb") as f:
            crm = pickle.load(f)
        gc.collect()
        print(f"loaded {crm} in {time.perf_counter() - t:.1f} s; peak RSS {peak_gb():.2f} GB")
        _review(crm)
        return
    n_opp = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    n_act = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000_000
    t = time.perf_counter()
    crm = synthesize(n_opp, n_act)
    gc.collect()
    print(f"synthesized {crm} in {time.perf_counter() - t:.1f} s; peak RSS {peak_gb():.2f} GB")
    _review(crm)
    t, c = time.perf_counter(), time.process_time()
    sc = fk.hygiene.scorecard(crm)
    print(
        f"scorecard: {sc['owner'].nunique():,} owners in {time.perf_counter() - t:.1f} s wall, "
        f"{time.process_time() - c:.1f} s CPU; peak RSS {peak_gb():.2f} GB"
    )


if __name__ == "__main__":
    main()
