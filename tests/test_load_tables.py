"""``forecastkit.load(path, tables=[...])``: the tables read are those of a full load, row for row.

Checked on data/sample, on a generated company with rejected rows of several kinds (so that the
reference checks between tables reject rows), without a snapshot date in ``crm.yaml``, through a
DuckDB URL, and on the forecast report, whose notebook reads only ``REPORT_TABLES["forecast"]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import forecastkit as fk
from forecastkit.adapters import sql
from forecastkit.data.schema import TABLES
from forecastkit.errors import ParameterError
from forecastkit.report.notebook import REPORT_TABLES

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
FORECAST = REPORT_TABLES["forecast"]
SUBSETS = [list(FORECAST), ["orders"], ["contacts", "subscriptions"], ["history"], []]


def _note_table(note: str, files: dict[str, str]) -> str | None:
    """The table a load-report note is about (its ``file:`` or ``table:`` prefix), None for other notes."""
    head = note.split(":")[0]
    by_file = {f: t for t, f in files.items()}
    return by_file.get(head, head if head in TABLES else None)


def assert_same_as_full(full: fk.CRM, sub: fk.CRM, named: list[str]) -> None:
    """``sub`` (loaded with ``tables=named``) has the named tables and report lines of ``full``, and no unread table."""
    read = [t for t in TABLES if sub.has(t)]
    assert "opportunities" in read and set(named) & {t for t in TABLES if full.has(t)} <= set(read)
    assert sub.as_of_date == full.as_of_date
    for name in read:
        pd.testing.assert_frame_equal(sub.tables[name], full.tables[name], obj=name)
    skipped = [t for t in TABLES if full.has(t) and t not in read]
    assert list(sub.load_report.not_read) == skipped
    for name in skipped:
        assert len(sub.tables[name]) == 0  # absent: the empty canonical frame
    rep, frep = sub.load_report, full.load_report
    pd.testing.assert_frame_equal(
        rep.summary.reset_index(drop=True),
        frep.summary[frep.summary["table"].isin(read)].reset_index(drop=True),
    )
    pd.testing.assert_frame_equal(
        rep.rejected.reset_index(drop=True),
        frep.rejected[frep.rejected["table"].isin(read)].reset_index(drop=True),
    )
    files = dict(zip(frep.summary["table"], frep.summary["file"], strict=True))
    expected = [
        n
        for n in frep.notes
        if _note_table(n, files) not in skipped
        and not ("accounts" in skipped and n.endswith("refer to an account missing from accounts (kept)"))
    ]
    if skipped:
        assert rep.notes[-1] == (
            f"not read, as asked (tables=[...]): {', '.join(skipped)}; absent from this snapshot"
            + ("; deals were not checked against accounts" if "accounts" in skipped else "")
        )
        assert rep.notes[:-1] == expected
    else:
        assert rep.notes == expected


# ------------------------------------------------------------------ data/sample
@pytest.fixture(scope="module")
def sample_full() -> fk.CRM:
    return fk.load(SAMPLE)


@pytest.mark.parametrize("named", SUBSETS, ids=lambda n: "+".join(n) or "none")
def test_sample_subset_equals_the_full_load(sample_full, named):
    sub = fk.load(SAMPLE, tables=named)
    assert_same_as_full(sample_full, sub, named)


def test_sample_forecast_tables_read_exactly_those(sample_full):
    sub = fk.load(SAMPLE, tables=FORECAST)
    assert [t for t in TABLES if sub.has(t)] == [t for t in TABLES if t in FORECAST]
    assert sub.load_report.not_read == ("accounts", "contacts", "orders", "costs", "subscriptions")
    assert "missing" not in sub.load_report.notes[-1] and "empty" not in sub.load_report.notes[-1]
    # tables=None is today's full load
    assert [t for t in TABLES if fk.load(SAMPLE, tables=None).has(t)] == [t for t in TABLES if sample_full.has(t)]


def test_tables_checked_against_are_read_too():
    sub = fk.load(SAMPLE, tables=["orders"])
    assert [t for t in TABLES if sub.has(t)] == ["opportunities", "accounts", "orders"]
    again = fk.load(SAMPLE, tables=(t for t in ["contacts"]))  # any iterable of names
    assert [t for t in TABLES if again.has(t)] == ["opportunities", "accounts", "contacts"]


def test_as_of_and_the_analyses_work_without_the_unread_tables(sample_full):
    sub = fk.load(SAMPLE, tables=FORECAST, as_of="2026-06-30")
    full = sample_full.as_of("2026-06-30")
    assert not sub.has("orders") and not sub.has("accounts")
    for name in FORECAST:
        pd.testing.assert_frame_equal(sub.tables[name], full.tables[name], obj=name)
    assert sub.load_report.not_read == ("accounts", "contacts", "orders", "costs", "subscriptions")


# ------------------------------------------------------------------ errors
def test_unknown_table_names_raise_with_the_valid_names():
    valid = ", ".join(TABLES)
    with pytest.raises(
        ParameterError, match=r"^tables: 'oportunities' is not a canonical table; canonical tables: "
    ) as e:
        fk.load(SAMPLE, tables=["oportunities", "history"])
    assert str(e.value).endswith(valid)
    with pytest.raises(ParameterError, match=r"^tables: 'deals', 'calls' are not canonical tables; canonical tables: "):
        fk.load(SAMPLE, tables=["deals", "calls"])
    with pytest.raises(ParameterError, match=r"tables must be a list of table names.*got the string 'history'"):
        fk.load(SAMPLE, tables="history")
    with pytest.raises(ParameterError, match=r"^tables: 'deals' is not a canonical table"):
        fk.load("duckdb:///nowhere/never-created.duckdb", tables=["deals"])  # before connecting
    with pytest.raises(ParameterError, match=r"^only: 'deals' is not a canonical table; canonical tables: "):
        sql.load("duckdb:///nowhere/never-created.duckdb", only=["deals"])


# ------------------------------------------------------------------ a company with rejected rows
def _corrupt(folder: Path) -> None:
    """Rows that each table's checks reject, several of them through the tables they are checked against."""

    def edit(name: str, change) -> None:  # type: ignore[no-untyped-def]
        path = folder / f"{name}.csv"
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        change(df).to_csv(path, index=False)

    def opps(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[3, "close_date"] = "soon"  # rejected: its history, field history and activities go with it
        df.loc[7, "amount"] = "-5"
        return pd.concat([df, df.iloc[[10]]], ignore_index=True)  # a duplicate id

    def hist(df: pd.DataFrame) -> pd.DataFrame:
        extra = df.iloc[[0, 1]].copy()
        extra["opportunity_id"] = ["NOPE-1", "NOPE-2"]  # unknown deals
        df.loc[5, "changed_at"] = "2001-01-01"  # before the deal was created
        return pd.concat([df, extra], ignore_index=True)

    def fields(df: pd.DataFrame) -> pd.DataFrame:
        extra = df.iloc[[0]].copy()
        extra["field"] = "colour"
        extra2 = df.iloc[[1]].copy()
        extra2["opportunity_id"] = "NOPE-3"
        return pd.concat([df, extra, extra2], ignore_index=True)

    def acts(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[2, "opportunity_id"] = "NOPE-4"
        df.loc[4, "due_at"] = "yesterday"
        return df

    ordering = set(pd.read_csv(folder / "orders.csv", dtype=str)["account_id"].head(50))

    def accounts(df: pd.DataFrame) -> pd.DataFrame:
        # rejected: their contacts, orders and MRR then refer to unknown accounts
        df.loc[df["account_id"].isin(ordering), "created_at"] = "someday"
        return pd.concat([df, df.iloc[[1]]], ignore_index=True)

    def by_account(col: str):  # type: ignore[no-untyped-def]
        def change(df: pd.DataFrame) -> pd.DataFrame:
            df.loc[1, col] = "ACC-NOPE"
            return df

        return change

    def calls(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[0, "submitted_at"] = "monday"
        return df

    edit("opportunities", opps)
    edit("history", hist)
    edit("field_history", fields)
    edit("activities", acts)
    edit("accounts", accounts)
    for name in ("contacts", "orders", "subscriptions"):
        edit(name, by_account("account_id"))
    edit("forecast_calls", calls)


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> Path:
    from forecastkit.data.sample import generate

    folder = generate(scenario="baseline", seed=5, n_reps=6, start="2024-01-01").save(
        tmp_path_factory.mktemp("messy") / "data"
    )
    folder = Path(folder)
    _corrupt(folder)
    return folder


def test_the_messy_company_rejects_rows_through_references(messy):
    rej = fk.load(messy).load_report.rejected
    reasons = set(zip(rej["table"], rej["reason"], strict=True))
    for expected in [
        ("history", "unknown opportunity"),
        ("history", "changed before created"),
        ("field_history", "unknown field"),
        ("field_history", "unknown opportunity"),
        ("activities", "unknown opportunity"),
        ("contacts", "unknown account"),
        ("orders", "unknown account"),
        ("subscriptions", "unknown account"),
    ]:
        assert expected in reasons
    # rows rejected because their deal or account was rejected (not only made-up ids)
    assert len(rej[(rej["table"] == "orders") & (rej["reason"] == "unknown account")]) > 1


@pytest.mark.parametrize("named", SUBSETS, ids=lambda n: "+".join(n) or "none")
def test_messy_subset_equals_the_full_load(messy, named):
    assert_same_as_full(fk.load(messy), fk.load(messy, tables=named), named)


def test_parquet_folder(messy, tmp_path):
    folder = fk.load(messy).save(tmp_path / "parquet", format="parquet")
    assert (folder / "activities.parquet").exists()
    full = fk.load(folder)
    for named in (list(FORECAST), ["subscriptions"]):
        assert_same_as_full(full, fk.load(folder, tables=named), named)


def test_without_a_snapshot_date_the_tables_that_set_it_are_read(messy, tmp_path):
    folder = tmp_path / "no_date"
    folder.mkdir()
    for p in messy.iterdir():
        if p.name != "crm.yaml":
            (folder / p.name).write_bytes(p.read_bytes())
    acts = pd.read_csv(folder / "activities.csv", dtype=str, keep_default_na=False)
    acts.loc[0, "done_at"] = "2026-11-25T10:00:00"  # the latest event: it sets the snapshot date
    acts.to_csv(folder / "activities.csv", index=False)
    full = fk.load(folder)
    sub = fk.load(folder, tables=["targets"])
    assert full.as_of_date == sub.as_of_date == pd.Timestamp("2026-11-25")
    assert [t for t in TABLES if sub.has(t)] == [
        "opportunities",
        "history",
        "field_history",
        "activities",
        "accounts",
        "orders",
        "targets",
        "forecast_calls",
    ]
    assert_same_as_full(full, sub, ["targets"])


# ------------------------------------------------------------------ database URL
def test_duckdb_url(messy, tmp_path):
    """The messy export's raw text in a DuckDB file (so that rows are rejected there too), read by URL."""
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect(str(tmp_path / "crm.duckdb"))
    for path in sorted(messy.glob("*.csv")):
        con.execute(f"create table {path.stem} as select * from read_csv('{path}', all_varchar = true)")
    con.execute("create table forecastkit_meta as select 'as_of' as key, '2026-11-20' as value")
    con.close()
    url = f"duckdb:///{tmp_path}/crm.duckdb"
    full = fk.load(url)
    assert len(full.load_report.rejected) > 20
    for named in (list(FORECAST), ["orders"]):
        sub = fk.load(url, tables=named)
        assert_same_as_full(full, sub, named)
    # as_of pushed into the queries (typed columns: a clean snapshot saved by forecastkit)
    clean = sql.save(fk.load(messy), f"duckdb:///{tmp_path}/clean.duckdb")
    sub = fk.load(clean, tables=FORECAST, as_of="2026-06-30")
    assert sub.load_report.not_read == ("accounts", "contacts", "orders", "costs", "subscriptions")
    back = fk.load(clean, as_of="2026-06-30")
    for name in FORECAST:
        pd.testing.assert_frame_equal(sub.tables[name], back.tables[name], obj=name)


# ------------------------------------------------------------------ the forecast report's tables
def test_forecast_analyses_on_the_report_tables_equal_the_full_load(messy):
    """What the forecast notebook computes, on a company loaded with ``REPORT_TABLES["forecast"]`` only."""
    from forecastkit.forecast.accuracy import calls_vs_actual

    full, sub = fk.load(messy), fk.load(messy, tables=FORECAST)
    assert sub.load_report.not_read
    team = str(full.opportunities["team"].dropna().iloc[0])
    for who in ({}, {"team": team}):
        a, b = fk.forecast(full, **who), fk.forecast(sub, **who)
        pd.testing.assert_frame_equal(a.deals, b.deals)
        for part in ("summary", "distribution", "target", "calls"):
            pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part), obj=part)
        assert a.notes == b.notes
    week = full.as_of_date - pd.Timedelta(days=7)
    pd.testing.assert_frame_equal(fk.pipeline_changes(full, week).deals, fk.pipeline_changes(sub, week).deals)
    pd.testing.assert_frame_equal(
        fk.backtest(full, periods=2, seed=0, checkpoints=("week4",)),
        fk.backtest(sub, periods=2, seed=0, checkpoints=("week4",)),
    )
    kw = {"periods": 2, "checkpoints": ("week4",), "level": "team"}
    pd.testing.assert_frame_equal(calls_vs_actual(full, **kw), calls_vs_actual(sub, **kw))


@pytest.mark.slow
def test_probability_analyses_on_the_report_tables_equal_the_full_load(messy):
    """What the probabilities notebook computes, on a company loaded with ``REPORT_TABLES["probabilities"]`` only."""
    from forecastkit.probability import holdout_predictions

    full, sub = fk.load(messy), fk.load(messy, tables=REPORT_TABLES["probabilities"])
    assert sub.load_report.not_read
    pd.testing.assert_frame_equal(fk.stage_probabilities(full, by=["team"]), fk.stage_probabilities(sub, by=["team"]))
    pd.testing.assert_frame_equal(fk.stage_age_probabilities(full), fk.stage_age_probabilities(sub))
    cutoff = full.as_of_date - pd.Timedelta(days=300)
    pd.testing.assert_frame_equal(holdout_predictions(full, cutoff), holdout_predictions(sub, cutoff))
    pd.testing.assert_frame_equal(
        fk.WinModel().fit(full).predict_proba(full), fk.WinModel().fit(sub).predict_proba(sub)
    )


def _reading_every_table(report: str, src: Path, dst: Path) -> Path:
    """The report's notebook loading every table (as it did before ``tables=``)."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    choice = f', tables=REPORT_TABLES["{report}"]'
    assert choice in src.read_text(encoding="utf-8").replace('\\"', '"')
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        cell["source"] = text.replace(choice, "").splitlines(keepends=True)
    dst.write_text(json.dumps(nb), encoding="utf-8")
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("report", list(REPORT_TABLES))
def test_report_numbers_equal_those_of_a_full_load(report, messy, tmp_path):
    from test_schedule import numbers_in_outputs

    from forecastkit.report.runner import notebook_path, run_report

    src = notebook_path(report)
    every = _reading_every_table(report, src, tmp_path / f"{report}_all_tables.ipynb")
    params = {"backtest_quarters": 2, "backtest_cache": ""} if report == "forecast" else {}
    a = run_report(src, data=messy, out=tmp_path / "subset", params=params, html=False, progress=False)
    b = run_report(every, data=messy, out=tmp_path / "full", params=params, html=False, progress=False)
    na, nb = numbers_in_outputs(a.notebook_path), numbers_in_outputs(b.notebook_path)
    assert len(na) > 5 and sum(len(x[2]) for x in na) > 100
    assert na == nb


def test_report_tables_name_canonical_tables():
    for report, names in REPORT_TABLES.items():
        assert set(names) <= set(TABLES), report
        assert names[0] == "opportunities"
        assert len(set(names)) == len(names)
