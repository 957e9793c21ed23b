"""The sample company's table-shape parameters (``SCALE_SHAPE``) and the fast CSV writer.

* ``generate(**SCALE_SHAPE)`` gives about 6 history rows, 10 activities and 2 orders per
  opportunity (the scale benchmark's shape) against ~3.5 / 6.7 / 0.65 by default;
* each parameter adds only its kind of rows: re-quotes are amount-only history rows (stage
  and close date as the row before), ``activity_mult`` scales the stage touches and leaves
  the outreach cadence (and its truth) alone, ``order_cycle_days`` sets the repeat
  customers' cycles (reported in ``truth.stopped_customers``);
* the analyses still recover the truth in that shape: stage probabilities and close-date
  pushes are those of the default company, stopped customers are found with precision and
  recall >= 0.9, the cadence truth matches the activities;
* the CSV writer writes the bytes of ``DataFrame.to_csv`` (the reference writer).
"""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecastkit.data.sample import SCALE_SHAPE, Sample, generate
from forecastkit.data.sample.csv_out import write_csv, write_csv_pandas
from forecastkit.data.timeline import close_date_pushes
from forecastkit.errors import ParameterError
from forecastkit.kpi.customers import customer_activity
from forecastkit.probability.stages import stage_probabilities


@pytest.fixture(scope="module")
def default() -> Sample:
    return generate(seed=4, n_reps=30)


@pytest.fixture(scope="module")
def shaped() -> Sample:
    return generate(seed=4, n_reps=30, **SCALE_SHAPE)


def _per_opp(s: Sample) -> dict[str, float]:
    n = len(s.tables["opportunities"])
    return {k: len(s.tables[k]) / n for k in ("history", "activities", "orders")}


# ------------------------------------------------------------------ shape
def test_scale_shape_rows_per_opportunity(default: Sample, shaped: Sample) -> None:
    base, got = _per_opp(default), _per_opp(shaped)
    assert 3.2 < base["history"] < 3.8 and 6.2 < base["activities"] < 7.2 and 0.5 < base["orders"] < 0.8
    assert 5.6 < got["history"] < 6.4, got
    assert 9.4 < got["activities"] < 10.6, got
    assert 1.8 < got["orders"] < 2.25, got
    for name, col in (("history", "changed_at"), ("activities", "created_at"), ("orders", "ordered_at")):
        assert (shaped.tables[name][col] < shaped.as_of).all(), name
    # the deals themselves do not change
    cols = ["opportunity_id", "owner", "created_at", "stage", "status", "close_date", "closed_at", "forecast_category"]
    pd.testing.assert_frame_equal(default.tables["opportunities"][cols], shaped.tables["opportunities"][cols])


def test_requotes_are_amount_only_history_rows(default: Sample, shaped: Sample) -> None:
    h0, h = default.tables["history"], shaped.tables["history"]
    key = ["opportunity_id", "changed_at"]
    extra = h.merge(h0[key], on=key, how="left", indicator=True)["_merge"].eq("left_only").to_numpy()
    assert extra.sum() > 1.5 * len(default.tables["opportunities"])
    same_deal = h["opportunity_id"].eq(h["opportunity_id"].shift()).to_numpy()
    assert same_deal[extra].all()  # never the creation row
    for col in ("stage", "close_date", "forecast_category"):
        assert h[col].eq(h[col].shift()).to_numpy()[extra].all(), col
    assert not h["amount"].eq(h["amount"].shift()).to_numpy()[extra].all()
    assert (h["amount"] >= 500).all()
    # rows of the default company are all there, stage and close date unchanged
    kept = h[~extra].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept[key + ["stage", "close_date"]], h0[key + ["stage", "close_date"]])
    opp = shaped.tables["opportunities"].set_index("opportunity_id")
    last = h.groupby("opportunity_id").tail(1).set_index("opportunity_id").loc[opp.index]
    assert (last["amount"] == opp["amount"]).all()


def test_activity_mult_scales_stage_touches_only(default: Sample) -> None:
    double = generate(seed=4, n_reps=30, activity_mult=2.0)
    a0, a2 = default.tables["activities"], double.tables["activities"]
    stage0, stage2 = a0["cadence_step"].isna().sum(), a2["cadence_step"].isna().sum()
    assert 1.9 < stage2 / stage0 < 2.1
    pd.testing.assert_frame_equal(default.truth.skipped_cadence_steps, double.truth.skipped_cadence_steps)
    pd.testing.assert_frame_equal(default.tables["opportunities"], double.tables["opportunities"])
    pd.testing.assert_frame_equal(default.tables["history"], double.tables["history"])


def test_order_cycle_days_sets_the_cycles(shaped: Sample) -> None:
    st = shaped.truth.stopped_customers
    assert set(st["usual_cycle_days"]) <= set(SCALE_SHAPE["order_cycle_days"])
    o = shaped.tables["orders"].sort_values(["account_id", "ordered_at"])
    gap = o.groupby("account_id")["ordered_at"].diff().dt.days.dropna()
    assert (gap == 0).mean() < 0.05
    assert 5 <= gap.quantile(0.2) <= 9  # weekly buyers are the biggest group (40%)


# ------------------------------------------------------------------ truth still recovered
def test_analyses_recover_truth_in_scale_shape(default: Sample, shaped: Sample) -> None:
    # stage counts come from stage rows only: the re-quotes leave them as they were
    pd.testing.assert_frame_equal(stage_probabilities(default.crm), stage_probabilities(shaped.crm))
    p0 = close_date_pushes(default.crm).sort_values("opportunity_id", ignore_index=True)
    p1 = close_date_pushes(shaped.crm).sort_values("opportunity_id", ignore_index=True)
    pd.testing.assert_frame_equal(p0, p1)


def test_stopped_customers_found_in_scale_shape(shaped: Sample) -> None:
    a = customer_activity(shaped.crm, p_alive=False)
    st = shaped.truth.stopped_customers
    judged = a[a["status"] != "one_off"]
    stopped = set(st["account_id"])
    flagged = set(judged.loc[judged["status"].isin(["inactive", "lost"]), "account_id"])
    due = st["stopped_at"] + pd.to_timedelta(st["usual_cycle_days"] * 1.5, unit="D") <= shaped.as_of
    detectable = set(st.loc[due, "account_id"]) & set(judged["account_id"])
    assert len(detectable) >= 20
    assert len(flagged & stopped) / len(flagged) >= 0.9
    assert len(flagged & detectable) / len(detectable) >= 0.9


def test_cadence_truth_matches_activities_in_scale_shape(shaped: Sample) -> None:
    cad = shaped.truth.skipped_cadence_steps
    act = shaped.tables["activities"].dropna(subset=["cadence_step"])
    m = cad.merge(act, on=["opportunity_id", "cadence_step"], how="left", validate="one_to_one")
    assert m.loc[m["outcome"] == "missed", "done_at"].isna().all()
    on_time = m[m["outcome"] == "on_time"]
    assert (on_time["done_at"].dt.normalize() <= on_time["due_at"].dt.normalize()).all()


# ------------------------------------------------------------------ bad values
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("activity_mult", -1.0),
        ("activity_mult", float("nan")),
        ("activity_mult", "x"),
        ("activity_mult", True),
        ("amount_revisions_per_month", -0.5),
        ("amount_revisions_per_month", float("inf")),
        ("amount_revisions_per_month", None),
    ],
)
def test_bad_shape_numbers(name: str, value: object) -> None:
    with pytest.raises(ParameterError, match=rf"{name} must be a finite number >= 0"):
        generate(n_reps=6, **{name: value})


@pytest.mark.parametrize("value", [(30.0, 60.0), "weekly", 7])
def test_bad_order_cycles_shape(value: object) -> None:
    with pytest.raises(ParameterError, match="order_cycle_days must be three numbers of days"):
        generate(n_reps=6, order_cycle_days=value)


@pytest.mark.parametrize("value", [(0.5, 30.0, 60.0), (7.0, None, 90.0), (7.0, float("nan"), 90.0)])
def test_bad_order_cycle_values(value: object) -> None:
    with pytest.raises(ParameterError, match="order_cycle_days must be a finite number >= 1"):
        generate(n_reps=6, order_cycle_days=value)


# ------------------------------------------------------------------ CSV writer
def _same_bytes(df: pd.DataFrame, tmp_path: Path, name: str) -> bool:
    a, b = tmp_path / f"{name}-ref.csv", tmp_path / f"{name}-new.csv"
    write_csv_pandas(df, a)
    write_csv(df, b)
    return filecmp.cmp(a, b, shallow=False)


def test_csv_writer_same_bytes_as_to_csv(shaped: Sample, tmp_path: Path) -> None:
    for name, df in shaped.tables.items():
        assert _same_bytes(df, tmp_path, name), name


def test_csv_writer_same_bytes_on_awkward_values(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "text": pd.array(["a,b", 'say "hi"', None, "", "two\nlines", "é ü", " lead", "plain"], dtype="string"),
            "num": [1.0, -0.0, np.nan, 1e20, 0.1 + 0.2, 1e-7, np.inf, 123456789.125],
            "flag": pd.array([True, None, False, True, True, False, None, True], dtype="boolean"),
            "when": pd.to_datetime(
                [
                    "2024-01-01",
                    None,
                    "2025-12-31 13:05:07",
                    "2024-01-01",
                    None,
                    "2020-02-29",
                    "2030-01-01",
                    "1999-12-31 23:59:59",
                ],
                format="mixed",
            ),
            "day": pd.to_datetime(
                ["2024-01-01", None, "2025-12-31", "2024-01-01", None, "2020-02-29", "2030-01-01", "1999-12-31"]
            ),
        }
    )
    assert _same_bytes(df, tmp_path, "awkward")
    assert _same_bytes(df.iloc[:0], tmp_path, "empty")
    assert _same_bytes(df.assign(text=df["text"].str.replace("\n", "\r\n")), tmp_path, "cr")  # reference writer
    assert _same_bytes(df.assign(other=np.arange(len(df))), tmp_path, "int")  # reference writer
    written = (tmp_path / "awkward-new.csv").read_text(encoding="utf-8").splitlines()
    assert written[0] == "text,num,flag,when,day"
    assert written[1] == '"a,b",1.0,True,2024-01-01T00:00:00,2024-01-01'
