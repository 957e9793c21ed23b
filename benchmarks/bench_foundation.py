"""Benchmark: load the sample company, rewind it with as_of, and save it.

Wall and CPU seconds are shown (on a shared machine CPU seconds are the steadier figure).
Each step runs in a fresh Python process so that its peak resident memory
(Linux ``VmHWM``/``ru_maxrss``) is its own. The import baseline (``import
forecastkit`` and pandas) is measured the same way and shown first, so the
other rows can be read as ratios against it.

Run: ``.venv/bin/python benchmarks/bench_foundation.py [DATA_DIR]``
"""

from __future__ import annotations

import json
import subprocess
import sys

STEPS = {
    "import baseline": "pass",
    "fk.load(data)": "crm = fk.load(DATA)",
    "fk.load(data) + crm.as_of('2025-06-30')": "crm = fk.load(DATA); t0 = time.perf_counter(); crm.as_of('2025-06-30'); extra = time.perf_counter() - t0",
    "fk.load(data) + save parquet": "crm = fk.load(DATA); crm.save(tempfile.mkdtemp(), format='parquet')",
}

TEMPLATE = """
import json, resource, tempfile, time
import forecastkit as fk
import pandas as pd
DATA = {data!r}
extra = None
t, c = time.perf_counter(), time.process_time()
{code}
elapsed, cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({{"seconds": elapsed, "cpu": cpu, "extra": extra, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def main(data: str = "data/sample") -> None:
    print(f"{'step':45s} {'seconds':>8s} {'CPU s':>8s} {'peak MB':>8s}")
    for name, code in STEPS.items():
        out = subprocess.run(
            [sys.executable, "-c", TEMPLATE.format(data=data, code=code)], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{name:45s} {r['seconds']:8.2f} {r['cpu']:8.2f} {r['peak_mb']:8.0f}"
            + (f"   (as_of alone: {r['extra']:.2f} s)" if r["extra"] else "")
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
