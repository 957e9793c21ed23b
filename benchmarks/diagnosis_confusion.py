"""The diagnosis confusion table: each scenario of the generator, several seeds, which cases are detected.

Prints one line per (scenario, seed) with the case-3 evidence (commit-call bias, quarters
biased up, commit deals' calibrated probability: the three votes) and the case-1/2 core
values, then the scenario x detected-cases table and the CPU seconds per diagnosis.
The per-run values are also written to ``diagnosis_confusion-<first_seed>.csv`` (current
directory) to check the margins of the thresholds.

Run (re-run after any generator change)::

    PYTHONPATH=src .venv/bin/python benchmarks/diagnosis_confusion.py [n_seeds] [first_seed] [method] [scenarios]

``method`` is the source of the commit deals' calibrated probability (``stage``, the
default here because it is fast, or ``model``, the default of ``fk.diagnose``);
``scenarios`` a comma-separated subset (e.g. ``optimistic,wide_pipeline+optimistic``).
"""

from __future__ import annotations

import sys
import time
import warnings

import pandas as pd

from forecastkit.data.sample import generate
from forecastkit.diagnosis import diagnose

SCENARIOS = ("baseline", "wide_pipeline", "slow_cycle", "optimistic", "wide_pipeline+optimistic")
EXPECTED = {"baseline": "none", "wide_pipeline": "1", "slow_cycle": "2", "optimistic": "3"}
EXPECTED["wide_pipeline+optimistic"] = "1+3"
SHOWN = {
    "qualified_to_won": "conv",
    "new_deals_per_rep_month": "leads",
    "median_days_to_win": "ttw",
    "commit_bias_median": "bias",
    "periods_biased_up": "n_up",
    "commit_win_probability": "commit_p",
    "crm_probability_gap": "gap",
}


def main(n_seeds: int = 10, first: int = 100, method: str = "stage", scenarios: str = ",".join(SCENARIOS)) -> None:
    warnings.simplefilter("ignore")
    rows, times = [], []
    chosen = [s for s in SCENARIOS if s in scenarios.split(",")]
    for scenario in chosen:
        for seed in range(first, first + n_seeds):
            crm = generate(scenario=scenario, seed=seed).crm
            t = time.process_time()
            dx = diagnose(crm, by=None, drilldown=False, method=method)  # type: ignore[arg-type]
            times.append(time.process_time() - t)
            ev = dx.to_frame().query("scope == 'company'").set_index("metric")["value"]
            row = {"scenario": scenario, "seed": seed, "detected": "+".join(map(str, dx.detected_cases())) or "none"}
            row.update({short: round(float(ev[m]), 3) for m, short in SHOWN.items() if m in ev})
            row["ok"] = row["detected"] == EXPECTED[scenario]
            rows.append(row)
            print(row, flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(f"diagnosis_confusion-{first}.csv", index=False)
    table = pd.crosstab(df["scenario"], df["detected"]).reindex(chosen)
    print(table.fillna(0).astype(int).to_string())
    print(
        f"\nCPU seconds per diagnosis (company-wide, no drill-down, method={method}): "
        f"median {pd.Series(times).median():.1f}"
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    main(*(int(a) for a in args[:2]), *args[2:4])  # type: ignore[arg-type]
