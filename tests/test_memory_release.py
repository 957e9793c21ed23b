"""An analysis leaves nothing behind that keeps the snapshot alive.

A scheduled job runs several analyses, drops them, then runs the report: at 1M deals a
snapshot is ~5 GB, so it must be freed as soon as the last reference goes, not at the
garbage collector's next pass (which an idle process waiting on its report's kernel may
never reach). A reference cycle through a cache (a closure kept in an object it closes
over) holds everything it reaches until then. The garbage collector is switched off
while each analysis runs: the snapshot must die by reference counting alone.
"""

from __future__ import annotations

import functools
import gc
import pickle
import weakref
from collections.abc import Callable, Iterator

import pandas as pd
import pytest

import forecastkit as fk
from forecastkit.data.crm import CRM
from forecastkit.data.sample import generate
from forecastkit.hygiene import review
from forecastkit.kpi.dashboards import DASHBOARDS


@functools.cache
def _company(n_reps: int) -> bytes:
    """6 reps: too few won deals to fit the win model (the fallback path); 12 reps: fitted."""
    return pickle.dumps(generate(scenario="optimistic", seed=4, n_reps=n_reps).crm)


def _dashboards(crm: CRM) -> list:
    return [fk.dashboards(crm, which, level="rep") for which in DASHBOARDS]


ANALYSES: dict[str, Callable[[CRM], object]] = {
    "as_of": lambda crm: crm.as_of(crm.as_of_date - pd.Timedelta(days=91)),
    "stage_probabilities": fk.stage_probabilities,
    "forecast (win model not fitted)": fk.forecast,
    "backtest": lambda crm: fk.backtest(crm, periods=2, seed=0, n_jobs=1),
    "pipeline_changes": lambda crm: fk.pipeline_changes(crm, crm.as_of_date - pd.Timedelta(days=7)),
    "review": review,
    "dashboards": _dashboards,
    "diagnose by team and owner": lambda crm: fk.diagnose(crm, by=("team", "owner")),
    "win_loss_review": fk.win_loss_review,
}


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("name", [*ANALYSES, "forecast"])
def test_the_snapshot_is_freed_when_the_job_drops_it(name: str, no_collector: None) -> None:
    crm = pickle.loads(_company(12 if name == "forecast" else 6))  # a snapshot of this test's own
    alive = weakref.ref(crm)
    result = ANALYSES.get(name, fk.forecast)(crm)
    assert result is not None
    if name.startswith("forecast"):  # both paths: the win model fitted, and its fit failing
        assert (result.model is not None) == (name == "forecast")
    del result, crm
    assert alive() is None, f"{name}: a reference cycle keeps the snapshot alive after the job dropped it"
