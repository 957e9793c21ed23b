"""The diagnosis confusion table: each scenario of the generator, several seeds, which cases are detected.

Prints a 4 x 4 table (scenario x detected case, plus "none") and the time per diagnosis.
Run: ``.venv/bin/python benchmarks/diagnosis_confusion.py [n_seeds] [first_seed]``
"""

from __future__ import annotations

import sys
import time
import warnings

import pandas as pd

from forecastkit.data.sample import generate
from forecastkit.diagnosis import diagnose

SCENARIOS = ("baseline", "wide_pipeline", "slow_cycle", "optimistic", "wide_pipeline+optimistic")


def main(n_seeds: int = 10, first: int = 100) -> None:
    warnings.simplefilter("ignore")
    rows, times = [], []
    for scenario in SCENARIOS:
        for seed in range(first, first + n_seeds):
            crm = generate(scenario=scenario, seed=seed).crm
            t = time.perf_counter()
            dx = diagnose(crm, by=None, drilldown=False)
            times.append(time.perf_counter() - t)
            cases = dx.detected_cases()
            rows.append({"scenario": scenario, "seed": seed, "detected": "+".join(map(str, cases)) or "none"})
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    table = pd.crosstab(df["scenario"], df["detected"]).reindex(list(SCENARIOS))
    print(table.fillna(0).astype(int).to_string())
    print(f"\nseconds per diagnosis (company-wide, no drill-down): median {pd.Series(times).median():.1f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
