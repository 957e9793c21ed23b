"""Validation: forecastkit's BG/NBD fit reproduces Fader, Hardie & Lee (2005) on the CDNOW sample.

The published maximum-likelihood estimates on the 2,357 CDNOW customers (39 weeks of
repeat purchases) are r = 0.243, alpha = 4.414, a = 0.793, b = 2.426 (log-likelihood
-9582.4). The ``lifetimes`` package ships that summary inside its wheel
(``lifetimes/datasets/cdnow_customers_summary.csv``: frequency, recency, T in weeks); this
script downloads the wheel with ``pip download lifetimes --no-deps`` into a temporary
folder and reads the CSV from it - lifetimes is not a dependency and is never imported.
It also checks the shifted-beta-geometric fit on Fader & Hardie's (2007) "High End"
retention data (alpha = 0.668, beta = 3.806).

Run: ``.venv/bin/python benchmarks/validate_bgnbd.py``; exits 1 when an estimate is off
by more than 1% (BG/NBD) or 0.5% (sBG).
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pandas as pd

from forecastkit.kpi.economics import fit_bgnbd, fit_sbg

PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491]


def cdnow_summary() -> pd.DataFrame:
    """The CDNOW customer summary read from the lifetimes wheel (downloaded, not installed)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "lifetimes", "--no-deps", "-d", tmp, "-q"], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            return pd.read_csv(io.BytesIO(z.read("lifetimes/datasets/cdnow_customers_summary.csv")))


def main() -> int:
    ok = True
    df = cdnow_summary()
    t = time.perf_counter()
    m = fit_bgnbd(df["frequency"], df["recency"], df["T"])
    secs = time.perf_counter() - t
    print(f"BG/NBD on CDNOW ({len(df)} customers, fitted in {secs:.2f} s), log-likelihood {m.log_likelihood_:.1f}")
    for name, ref in PUBLISHED.items():
        got = m.params_[name]
        err = abs(got / ref - 1)
        ok &= err <= 0.01
        print(f"  {name:6s} fitted {got:.4f}  published {ref:.3f}  error {err:.2%}")
    s = fit_sbg(HIGH_END)
    print("sBG on Fader & Hardie's High End retention")
    for name, got, ref in (("alpha", s.alpha_, 0.668), ("beta", s.beta_, 3.806)):
        err = abs(got / ref - 1)
        ok &= err <= 0.005
        print(f"  {name:6s} fitted {got:.4f}  published {ref:.3f}  error {err:.2%}")
    print("OK: published estimates reproduced" if ok else "FAILED: an estimate is off")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
