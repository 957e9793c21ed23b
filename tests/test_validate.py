"""Validation of raw tables: each rule rejects the right rows with the right reason, and every row is accounted for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecastkit.data.crm import CRM
from forecastkit.data.validate import LoadReport, validate_tables
from forecastkit.errors import DataError, SchemaError
from forecastkit.playbook import Playbook

AS_OF = "2026-06-30"


def _append(raw: dict[str, pd.DataFrame], table: str, base: int = -1, **values: object) -> int:
    """Append a copy of row ``base`` of ``table`` with ``values`` changed; return its 1-based row number."""
    df = raw[table]
    row = df.iloc[[base]].copy()
    for k, v in values.items():
        row[k] = v
    raw[table] = pd.concat([df, row], ignore_index=True)
    return len(raw[table])


def _new_opp(raw: dict[str, pd.DataFrame], **values: object) -> int:
    """Append an open discovery deal (a copy of O4) with a fresh id; return its row number."""
    n = len(raw["opportunities"]) + 1
    return _append(raw, "opportunities", base=3, **{"opportunity_id": f"N{n}", **values})


def _load(raw: dict[str, pd.DataFrame], **kw: object) -> CRM:
    crm = CRM.from_tables(raw, as_of=kw.pop("as_of", AS_OF), **kw)  # type: ignore[arg-type]
    _assert_accounting(crm.load_report, raw)
    return crm


def _assert_accounting(report: LoadReport, raw: dict[str, pd.DataFrame]) -> None:
    s = report.summary.set_index("table")
    assert (s["rows_read"] == s["rows_kept"] + s["rows_rejected"]).all()
    for name, df in raw.items():
        assert s.loc[name, "rows_read"] == len(df)
        assert s.loc[name, "rows_rejected"] == int((report.rejected["table"] == name).sum())


def _rejected(crm: CRM, table: str = "opportunities") -> pd.DataFrame:
    r = crm.load_report.rejected
    return r[r["table"] == table].reset_index(drop=True)


def _only_rejection(crm: CRM, table: str = "opportunities") -> pd.Series:
    r = _rejected(crm, table)
    assert len(r) == 1, r
    return r.iloc[0]


# ------------------------------------------------------------------ valid
def test_valid_crm_keeps_every_row(crm: CRM, raw_tables: dict[str, pd.DataFrame]) -> None:
    _assert_accounting(crm.load_report, raw_tables)
    assert crm.load_report.ok
    assert crm.load_report.describe() == "all rows kept"
    crm.load_report.raise_for_errors()
    assert crm.as_of_date == pd.Timestamp(AS_OF)
    assert len(crm.opportunities) == 4
    assert crm.opportunities["status"].tolist() == ["won", "open", "lost", "open"]
    assert crm.load_report.summary["rows_added"].sum() == 0
    assert crm.load_report.notes == []


def test_canonical_dtypes(crm: CRM) -> None:
    o = crm.opportunities
    assert o["created_at"].dtype == "datetime64[ns]"
    assert o["amount"].dtype == "float64"
    assert isinstance(o["stage"].dtype, pd.StringDtype)
    assert o["amount"].tolist() == [10000.0, 5000.0, 8000.0, 12000.0]
    assert "_row" not in o.columns


def test_validation_does_not_mutate_input(raw_tables: dict[str, pd.DataFrame]) -> None:
    before = {k: v.copy() for k, v in raw_tables.items()}
    CRM.from_tables(raw_tables, as_of=AS_OF)
    for k, v in raw_tables.items():
        pd.testing.assert_frame_equal(v, before[k])


def test_as_of_defaults_to_latest_event(raw_tables: dict[str, pd.DataFrame]) -> None:
    crm = CRM.from_tables(raw_tables)
    assert crm.as_of_date == pd.Timestamp("2026-05-12")  # the last activity done


def test_typed_input_is_accepted(crm: CRM) -> None:
    # canonical (already typed) tables validate to themselves
    again = CRM.from_tables(crm.tables | {}, as_of=AS_OF)
    for name in ("opportunities", "history", "activities", "orders"):
        pd.testing.assert_frame_equal(again.tables[name], crm.tables[name])


# ------------------------------------------------------- parse failures
def test_unparseable_dates(opp_raw: dict[str, pd.DataFrame]) -> None:
    r1 = _new_opp(opp_raw, created_at="31/02/2026")
    r2 = _new_opp(opp_raw, close_date="soon")
    crm = _load(opp_raw)
    rej = _rejected(crm)
    assert rej[["row", "column", "value", "reason"]].values.tolist() == [
        [r1, "created_at", "31/02/2026", "not a date"],
        [r2, "close_date", "soon", "not a date"],
    ]
    assert len(crm.opportunities) == 4


def test_unparseable_numbers(opp_raw: dict[str, pd.DataFrame]) -> None:
    amounts = ["12,000", "€100", "abc", "inf", "-inf", "NaN", "nan"]
    rows = [_new_opp(opp_raw, amount=a) for a in amounts]
    _new_opp(opp_raw, amount=" 1e3 ")  # kept
    crm = _load(opp_raw)
    rej = _rejected(crm)
    assert rej["row"].tolist() == rows
    assert rej["value"].tolist() == amounts
    assert set(rej["column"]) == {"amount"}
    assert set(rej["reason"]) == {"not a number"}
    assert crm.opportunities["amount"].iloc[-1] == 1000.0


def test_typed_infinite_amount_rejected(raw_tables: dict[str, pd.DataFrame]) -> None:
    opps = CRM.from_tables(raw_tables, as_of=AS_OF).opportunities.copy()
    opps.loc[1, "amount"] = np.inf
    crm = CRM.from_tables({"opportunities": opps}, as_of=AS_OF)
    assert _only_rejection(crm)["reason"] == "not a number"


def test_bad_bool(raw_tables: dict[str, pd.DataFrame]) -> None:
    raw_tables["activities"]["report_context"] = ["yes", "0", "maybe"]
    crm = _load(raw_tables)
    r = _only_rejection(crm, "activities")
    assert (r["row"], r["column"], r["value"], r["reason"]) == (3, "report_context", "maybe", "not true/false")
    assert crm.activities["report_context"].tolist() == [True, False]


def test_missing_required_value(opp_raw: dict[str, pd.DataFrame]) -> None:
    columns = ["opportunity_id", "owner", "created_at", "close_date", "amount", "stage"]
    rows = [_new_opp(opp_raw, **{c: None}) for c in columns]
    _new_opp(opp_raw, team=None, probability=None)  # optional values may be missing
    crm = _load(opp_raw)
    rej = _rejected(crm)
    assert rej[["row", "column", "value", "reason"]].values.tolist() == [
        [r, c, "", "missing required value"] for r, c in zip(rows, columns, strict=True)
    ]
    assert len(crm.opportunities) == 5


def test_blank_text_is_missing(opp_raw: dict[str, pd.DataFrame]) -> None:
    _new_opp(opp_raw, owner="   ")
    assert _only_rejection(_load(opp_raw))["reason"] == "missing required value"


def test_negative_amounts(raw_tables: dict[str, pd.DataFrame]) -> None:
    row = _new_opp(raw_tables, amount="-5")
    orow = _append(raw_tables, "orders", order_id="R2", amount="-1")
    crm = _load(raw_tables)
    r = _only_rejection(crm)
    assert (r["row"], r["column"], r["reason"]) == (row, "amount", "negative")
    r = _only_rejection(crm, "orders")
    assert (r["row"], r["column"], r["reason"]) == (orow, "amount", "negative")


# ---------------------------------------------------------- allowed values
def test_disallowed_status_category_and_activity_type(raw_tables: dict[str, pd.DataFrame]) -> None:
    r1 = _new_opp(raw_tables, status="pending")
    r2 = _new_opp(raw_tables, forecast_category="maybe")
    r3 = _new_opp(raw_tables, forecast_category="Best Case")  # normalised, kept
    a = _append(raw_tables, "activities", activity_id="T9", type="fax")
    crm = _load(raw_tables)
    rej = _rejected(crm)
    assert rej[["row", "column", "value"]].values.tolist() == [
        [r1, "status", "pending"],
        [r2, "forecast_category", "maybe"],
    ]
    assert rej["reason"].tolist() == [
        "not allowed (allowed: open, won, lost)",
        "not allowed (allowed: closed, commit, best_case, pipeline, omitted)",
    ]
    kept = crm.opportunities.set_index("opportunity_id")
    assert kept.loc[f"N{r3}", "forecast_category"] == "best_case"
    r = _only_rejection(crm, "activities")
    assert (r["row"], r["column"], r["value"]) == (a, "type", "fax")
    assert r["reason"].startswith("not allowed (allowed: call, email, visit, meeting, social")


def test_stage_missing_from_playbook(opp_raw: dict[str, pd.DataFrame]) -> None:
    row = _new_opp(opp_raw, stage="demo")
    ok = _new_opp(opp_raw, stage=" Proposal ")  # case and spaces normalised
    h = _append(opp_raw, "history", base=0, stage="closed won")
    crm = _load(opp_raw)
    r = _only_rejection(crm)
    assert (r["row"], r["column"], r["value"]) == (row, "stage", "demo")
    assert r["reason"].startswith("unknown stage (playbook stages: to_contact, qualification")
    assert crm.opportunities.set_index("opportunity_id").loc[f"N{ok}", "stage"] == "proposal"
    r = _only_rejection(crm, "history")
    assert (r["row"], r["value"]) == (h, "closed_won")


def test_custom_playbook_stages(opp_raw: dict[str, pd.DataFrame]) -> None:
    pb = Playbook.from_dict(
        {"stages": [{"name": "discovery"}, {"name": "demo", "crm_probability": 0.4, "age_cap_days": 20}]}
    )
    _new_opp(opp_raw, stage="demo")
    crm = _load(opp_raw, playbook=pb)
    # proposal and to_contact are no longer stages
    assert set(_rejected(crm)["value"]) == {"proposal"}
    assert set(_rejected(crm, "history")["value"]) == {"qualification", "proposal", "to_contact"}


def test_duplicated_ids_later_rejected(opp_raw: dict[str, pd.DataFrame]) -> None:
    row = _append(opp_raw, "opportunities", base=1, amount="1")  # a second O2
    crm = _load(opp_raw)
    r = _only_rejection(crm)
    assert (r["row"], r["column"], r["reason"]) == (row, "opportunity_id", "duplicate id")
    assert r["value"] == "O2 (first seen at row 2)"
    assert crm.opportunities.set_index("opportunity_id").loc["O2", "amount"] == 5000.0
    with pytest.raises(DataError, match=r"duplicate id \(rows 5: 'O2 \(first seen at row 2\)'\)\. Ids must be unique"):
        crm.load_report.raise_for_errors()


def test_duplicated_composite_key() -> None:
    subs = pd.DataFrame(
        {"account_id": ["A1", "A1", "A1"], "month": ["2026-01-01", "2026-02-01", "2026-01-01"], "mrr": ["1", "2", "3"]}
    )
    opps = CRM.from_tables(
        {
            "opportunities": pd.DataFrame(
                columns=["opportunity_id", "owner", "created_at", "close_date", "amount", "stage"]
            )
        },
        as_of=AS_OF,
    ).opportunities
    crm = CRM.from_tables({"opportunities": opps, "subscriptions": subs}, as_of=AS_OF)
    r = _only_rejection(crm, "subscriptions")
    assert r["row"] == 3
    assert r["value"] == "A1 / 2026-01-01 (first seen at row 1)"


# ------------------------------------------------------------- references
def test_history_for_unknown_opportunity(opp_raw: dict[str, pd.DataFrame]) -> None:
    row = _append(opp_raw, "history", opportunity_id="GHOST")
    crm = _load(opp_raw)
    r = _only_rejection(crm, "history")
    assert (r["row"], r["column"], r["value"], r["reason"]) == (row, "opportunity_id", "GHOST", "unknown opportunity")


def test_history_of_rejected_deal_is_rejected_too(opp_raw: dict[str, pd.DataFrame]) -> None:
    opp_raw["opportunities"].loc[3, "amount"] = "lots"  # O4
    crm = _load(opp_raw)
    assert set(_rejected(crm, "history")["value"]) == {"O4"}
    assert "O4" not in set(crm.history["opportunity_id"])


def test_history_before_creation(opp_raw: dict[str, pd.DataFrame]) -> None:
    row = _append(opp_raw, "history", base=0, changed_at="2025-12-31")  # O1 created 2026-01-05
    crm = _load(opp_raw)
    r = _only_rejection(crm, "history")
    assert (r["row"], r["column"], r["reason"]) == (row, "changed_at", "changed before created")


def test_history_same_day_as_creation_is_kept(opp_raw: dict[str, pd.DataFrame]) -> None:
    opp_raw["opportunities"].loc[0, "created_at"] = "2026-01-05T15:00:00"
    opp_raw["history"].loc[0, "changed_at"] = "2026-01-05T09:00:00"
    assert _load(opp_raw).load_report.ok


def test_field_history_unknown_field(raw_tables: dict[str, pd.DataFrame]) -> None:
    row = _append(raw_tables, "field_history", field="favourite_colour")
    crm = _load(raw_tables)
    r = _only_rejection(crm, "field_history")
    assert (r["row"], r["column"], r["value"], r["reason"]) == (row, "field", "favourite_colour", "unknown field")


def test_activities_for_unknown_deals(raw_tables: dict[str, pd.DataFrame]) -> None:
    row = _append(raw_tables, "activities", activity_id="T9", opportunity_id="GHOST")
    crm = _load(raw_tables)
    r = _only_rejection(crm, "activities")
    assert (r["row"], r["column"], r["reason"]) == (row, "opportunity_id", "unknown opportunity")
    assert len(crm.activities) == 3  # T3 has no deal and is kept


def test_contacts_and_orders_for_unknown_accounts(raw_tables: dict[str, pd.DataFrame]) -> None:
    c = _append(raw_tables, "contacts", contact_id="C9", account_id="A9")
    o = _append(raw_tables, "orders", order_id="R9", account_id="A9")
    crm = _load(raw_tables)
    assert _only_rejection(crm, "contacts")[["row", "reason"]].tolist() == [c, "unknown account"]
    assert _only_rejection(crm, "orders")[["row", "reason"]].tolist() == [o, "unknown account"]


def test_unknown_accounts_ignored_without_accounts_table(raw_tables: dict[str, pd.DataFrame]) -> None:
    _append(raw_tables, "contacts", contact_id="C9", account_id="A9")
    del raw_tables["accounts"]
    assert _load(raw_tables).load_report.ok


def test_deal_with_unknown_account_is_kept_with_a_note(raw_tables: dict[str, pd.DataFrame]) -> None:
    _new_opp(raw_tables, account_id="A9")
    crm = _load(raw_tables)
    assert crm.load_report.ok
    assert "opportunities: 1 deal(s) refer to an account missing from accounts (kept)" in crm.load_report.notes


# ----------------------------------------------------- opportunity rules
def test_close_before_creation(opp_raw: dict[str, pd.DataFrame]) -> None:
    r1 = _new_opp(opp_raw, close_date="2026-02-01")  # created 2026-03-01
    r2 = _append(opp_raw, "opportunities", base=0, opportunity_id="W2", closed_at="2025-12-01")
    crm = _load(opp_raw)
    rej = _rejected(crm)
    assert rej["row"].tolist() == [r1, r2]
    assert set(rej["reason"]) == {"closed before created"}
    assert set(rej["column"]) == {"close_date"}


def test_status_contradicting_stage(opp_raw: dict[str, pd.DataFrame]) -> None:
    r1 = _new_opp(opp_raw, status="won")  # stage discovery
    r2 = _append(opp_raw, "opportunities", base=0, opportunity_id="W2", status="open")  # stage won
    crm = _load(opp_raw)
    rej = _rejected(crm)
    assert rej[["row", "column", "value", "reason"]].values.tolist() == [
        [r1, "status", "won / discovery", "status does not match stage"],
        [r2, "status", "open / won", "status does not match stage"],
    ]


def test_status_derived_from_stage(opp_raw: dict[str, pd.DataFrame]) -> None:
    opp_raw["opportunities"] = opp_raw["opportunities"].drop(columns=["status", "closed_at"])
    crm = _load(opp_raw)
    o = crm.opportunities
    assert o["status"].tolist() == ["won", "open", "lost", "open"]
    # closed_at defaults to the close date of closed deals
    assert o["closed_at"].tolist()[0] == pd.Timestamp("2026-03-31")
    assert o["closed_at"].isna().tolist() == [False, True, False, True]
    assert o["forecast_category"].tolist()[0] == "closed"


def test_probability_as_percentages(opp_raw: dict[str, pd.DataFrame]) -> None:
    opp_raw["opportunities"]["probability"] = ["100", "50", "0", "25"]
    crm = _load(opp_raw)
    assert crm.load_report.ok
    assert crm.opportunities["probability"].tolist() == [1.0, 0.5, 0.0, 0.25]
    assert "opportunities: 'probability' read as percentages (0-100) and divided by 100" in crm.load_report.notes


def test_probability_out_of_range(opp_raw: dict[str, pd.DataFrame]) -> None:
    r1 = _new_opp(opp_raw, probability="150")
    r2 = _new_opp(opp_raw, probability="-0.2")
    crm = _load(opp_raw)
    rej = _rejected(crm)
    assert rej[["row", "column", "reason"]].values.tolist() == [
        [r1, "probability", "probability out of range"],
        [r2, "probability", "probability out of range"],
    ]
    assert crm.load_report.notes == []


# ---------------------------------------------------------------- currency
def test_mixed_currencies_without_rates(opp_raw: dict[str, pd.DataFrame]) -> None:
    _new_opp(opp_raw, currency="USD")
    _new_opp(opp_raw, currency="gbp")
    with pytest.raises(
        DataError, match=r"opportunities: amounts are in several currencies \(EUR, GBP, USD\).*Pass fx_rates="
    ):
        CRM.from_tables(opp_raw, as_of=AS_OF)


def test_mixed_currencies_with_rates(opp_raw: dict[str, pd.DataFrame]) -> None:
    row = _new_opp(opp_raw, currency="usd", amount="1000", budget="2000")
    crm = _load(opp_raw, fx_rates={"USD": 0.9})
    deal = crm.opportunities.set_index("opportunity_id").loc[f"N{row}"]
    assert deal["amount"] == pytest.approx(900.0)
    assert deal["budget"] == pytest.approx(1800.0)
    assert set(crm.opportunities["currency"]) == {"EUR"}
    assert crm.opportunities.set_index("opportunity_id").loc["O1", "amount"] == 10000.0
    assert "opportunities: converted 1 amounts to EUR with the given rates" in crm.load_report.notes


def test_unknown_currency_rejected(opp_raw: dict[str, pd.DataFrame]) -> None:
    _new_opp(opp_raw, currency="USD")
    row = _new_opp(opp_raw, currency="JPY")
    crm = _load(opp_raw, fx_rates={"USD": 0.9})
    r = _only_rejection(crm)
    assert (r["row"], r["column"], r["value"]) == (row, "currency", "JPY")
    assert r["reason"] == "unknown currency (rates given for: EUR, USD)"


def test_single_foreign_currency_matching_playbook(opp_raw: dict[str, pd.DataFrame]) -> None:
    opp_raw["opportunities"]["currency"] = "USD"
    crm = _load(opp_raw, playbook=Playbook(currency="USD"))
    assert crm.load_report.ok


# ------------------------------------------------------------ schema errors
def test_missing_required_column(opp_raw: dict[str, pd.DataFrame]) -> None:
    opp_raw["opportunities"] = opp_raw["opportunities"].drop(columns=["amount"])
    with pytest.raises(
        SchemaError,
        match=r"opportunities.csv: required column\(s\) 'amount' missing from table 'opportunities'\. "
        r"Found columns: opportunity_id, account_id, .*\. Rename your columns to the canonical names",
    ):
        CRM.from_tables(opp_raw, as_of=AS_OF, files={"opportunities": "opportunities.csv"})


def test_missing_required_column_of_optional_table(raw_tables: dict[str, pd.DataFrame]) -> None:
    raw_tables["history"] = raw_tables["history"].drop(columns=["changed_at"])
    with pytest.raises(SchemaError, match=r"history: required column\(s\) 'changed_at' missing from table 'history'"):
        CRM.from_tables(raw_tables, as_of=AS_OF)


def test_duplicated_header(opp_raw: dict[str, pd.DataFrame]) -> None:
    o = opp_raw["opportunities"]
    opp_raw["opportunities"] = pd.concat([o, o[["owner"]].rename(columns={"owner": " owner "})], axis=1)
    with pytest.raises(SchemaError, match=r"opportunities: column\(s\) 'owner' appear more than once; rename or drop"):
        CRM.from_tables(opp_raw, as_of=AS_OF)


def test_missing_opportunities_table(raw_tables: dict[str, pd.DataFrame]) -> None:
    del raw_tables["opportunities"]
    with pytest.raises(SchemaError, match=r"no 'opportunities' table: it is the one table a CRM snapshot needs"):
        CRM.from_tables(raw_tables, as_of=AS_OF)


def test_unknown_table_name(raw_tables: dict[str, pd.DataFrame]) -> None:
    raw_tables["deals"] = raw_tables["opportunities"]
    with pytest.raises(SchemaError, match=r"unknown table\(s\) 'deals'; canonical tables: opportunities, history"):
        CRM.from_tables(raw_tables, as_of=AS_OF)


def test_extra_columns_noted(opp_raw: dict[str, pd.DataFrame]) -> None:
    opp_raw["opportunities"]["colour"] = "red"
    crm = _load(opp_raw)
    assert "colour" not in crm.opportunities.columns
    assert "opportunities: ignored column(s) not in the 'opportunities' schema: colour" in crm.load_report.notes


def test_no_dated_event_needs_as_of() -> None:
    empty = pd.DataFrame(columns=["opportunity_id", "owner", "created_at", "close_date", "amount", "stage"])
    with pytest.raises(SchemaError, match=r"no dated event .* pass as_of="):
        CRM.from_tables({"opportunities": empty})
    assert len(CRM.from_tables({"opportunities": empty}, as_of=AS_OF).opportunities) == 0


# ------------------------------------------------------------------ strict
def test_strict_raises_with_file_column_examples_and_fix(opp_raw: dict[str, pd.DataFrame]) -> None:
    _new_opp(opp_raw, close_date="31/02/2026")
    _new_opp(opp_raw, close_date="soon")
    with pytest.raises(DataError) as info:
        CRM.from_tables(opp_raw, as_of=AS_OF, strict=True, files={"opportunities": "opportunities.csv"})
    msg = str(info.value)
    assert msg.startswith("2 row(s) rejected:")
    assert (
        "opportunities.csv: column 'close_date' has 2 row(s) rejected - not a date (rows 5: '31/02/2026', 6: 'soon'). "
        "Use ISO dates (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)." in msg
    )


def test_strict_passes_on_valid_data(raw_tables: dict[str, pd.DataFrame]) -> None:
    assert CRM.from_tables(raw_tables, as_of=AS_OF, strict=True).load_report.ok


@pytest.mark.parametrize("n_bad", [10, 10_000])
def test_strict_message_stays_bounded(opp_raw: dict[str, pd.DataFrame], n_bad: int) -> None:
    o = opp_raw["opportunities"]
    bad = pd.concat([o.iloc[[3]]] * n_bad, ignore_index=True)
    bad["opportunity_id"] = [f"B{i}" for i in range(n_bad)]
    bad["amount"] = [f"{i} EUR" for i in range(n_bad)]
    bad["created_at"] = ["someday"] * (n_bad // 2) + ["2026-03-01"] * (n_bad - n_bad // 2)
    dups = pd.concat([o] * (n_bad // 4 + 1), ignore_index=True)  # many duplicated ids
    opp_raw["opportunities"] = pd.concat([o, bad, dups], ignore_index=True)
    with pytest.raises(
        DataError, match=r"opportunities.csv: column 'amount' has \d+ row\(s\) rejected - not a number"
    ) as info:
        CRM.from_tables(opp_raw, as_of=AS_OF, strict=True, files={"opportunities": "opportunities.csv"})
    msg = str(info.value)
    assert len(msg) < 2000
    assert "and " in msg and " more)" in msg
    for line in msg.splitlines()[1:]:
        assert line.count("(rows ") == 1
        assert line.split("(rows ", 1)[1].count(": '") <= 3  # at most three examples per group


def test_describe_names_reason_and_fix(opp_raw: dict[str, pd.DataFrame]) -> None:
    _new_opp(opp_raw, stage="demo")
    text = _load(opp_raw).load_report.describe()
    assert "column 'stage' has 1 row(s) rejected - unknown stage" in text
    assert "Map it to a playbook stage, or add the stage to the playbook's 'stages'." in text


# ----------------------------------------------------------- history
def test_reconciliation_adds_a_history_row_at_snapshot(opp_raw: dict[str, pd.DataFrame]) -> None:
    opp_raw["opportunities"].loc[1, "amount"] = "7000"  # O2: history says 5000
    crm = _load(opp_raw)
    s = crm.load_report.summary.set_index("table")
    assert s.loc["history", "rows_added"] == 1
    assert s.loc["history", "rows_kept"] == len(opp_raw["history"])
    assert len(crm.history) == len(opp_raw["history"]) + 1
    last = crm.history[crm.history["opportunity_id"] == "O2"].iloc[-1]
    assert (last["changed_at"], last["amount"], last["stage"]) == (pd.Timestamp(AS_OF), 7000.0, "proposal")
    assert any(
        "1 deal(s) show a current state that their last history row does not" in n for n in crm.load_report.notes
    )
    assert crm.as_of("2026-06-29").opportunities.set_index("opportunity_id").loc["O2", "amount"] == 5000.0


def test_reconciliation_of_closed_deal_is_dated_at_close(opp_raw: dict[str, pd.DataFrame]) -> None:
    h = opp_raw["history"]
    opp_raw["history"] = h[~((h["opportunity_id"] == "O1") & (h["stage"] == "won"))].reset_index(drop=True)
    crm = _load(opp_raw)
    last = crm.history[crm.history["opportunity_id"] == "O1"].iloc[-1]
    assert (last["stage"], last["changed_at"]) == ("won", pd.Timestamp("2026-03-20"))
    # a deal won in March is not shown open in April
    assert crm.as_of("2026-04-30").opportunities.set_index("opportunity_id").loc["O1", "status"] == "won"
    assert crm.as_of("2026-03-19").opportunities.set_index("opportunity_id").loc["O1", "status"] == "open"


def test_deals_without_history_are_noted(opp_raw: dict[str, pd.DataFrame]) -> None:
    _new_opp(opp_raw)
    crm = _load(opp_raw)
    assert crm.load_report.ok
    assert any("1 deal(s) have no history row" in n for n in crm.load_report.notes)


def test_no_history_table_is_noted(raw_tables: dict[str, pd.DataFrame]) -> None:
    crm = _load({"opportunities": raw_tables["opportunities"]})
    assert any("no history table" in n for n in crm.load_report.notes)


def test_history_sorted_by_deal_and_date(opp_raw: dict[str, pd.DataFrame]) -> None:
    opp_raw["history"] = opp_raw["history"].iloc[::-1].reset_index(drop=True)
    crm = _load(opp_raw)
    h = crm.history
    assert h.equals(h.sort_values(["opportunity_id", "changed_at"]).reset_index(drop=True))


def test_validate_tables_direct(raw_tables: dict[str, pd.DataFrame]) -> None:
    tables, report, as_of = validate_tables(raw_tables, playbook=Playbook(), row_offsets={"opportunities": 10})
    assert as_of == pd.Timestamp("2026-05-12")
    assert set(tables) == set(raw_tables)
    raw_tables["opportunities"].loc[0, "amount"] = "x"
    _, report, _ = validate_tables(raw_tables, playbook=Playbook(), row_offsets={"opportunities": 10})
    assert report.rejected["row"].tolist()[0] == 11


def test_history_amounts_converted_with_their_deal_currency(opp_raw: dict[str, pd.DataFrame]) -> None:
    opp_raw["opportunities"].loc[1, "currency"] = "USD"  # O2: 5000 USD, history 4000 then 5000 USD
    crm = _load(opp_raw, fx_rates={"USD": 0.5})
    h = crm.history[crm.history["opportunity_id"] == "O2"]
    assert h["amount"].tolist() == [2000.0, 2500.0]
    assert crm.opportunities.set_index("opportunity_id").loc["O2", "amount"] == 2500.0
    assert crm.load_report.summary.set_index("table").loc["history", "rows_added"] == 0  # no false mismatch
    assert "history: converted 2 amounts to EUR with the given rates" in crm.load_report.notes
    assert "currency" not in crm.history


def test_history_rows_own_currency_wins_and_unknown_ones_are_rejected(opp_raw: dict[str, pd.DataFrame]) -> None:
    h = opp_raw["history"]
    h["currency"] = "EUR"
    h.loc[h["opportunity_id"] == "O1", "currency"] = ["GBP", "EUR", "JPY"]
    crm = _load(opp_raw, fx_rates={"GBP": 2.0})
    o1 = crm.history[crm.history["opportunity_id"] == "O1"]
    assert o1["amount"].tolist()[:2] == [20000.0, 10000.0]
    r = crm.load_report.rejected
    assert r[["table", "row", "column", "value"]].values.tolist() == [["history", 3, "currency", "JPY"]]
    assert r["reason"].iloc[0] == "unknown currency (rates given for: EUR, GBP)"


def test_pyarrow_duplicate_and_reference_checks_match_pandas():
    from forecastkit.data.validate import _duplicated, _isin, _lookup

    rng = np.random.default_rng(0)
    vals = np.array([f"id{i}" for i in rng.integers(0, 50, 400)], dtype=object)
    vals[rng.random(400) < 0.1] = pd.NA
    df = pd.DataFrame({"k": pd.array(vals, dtype="string"), "m": rng.integers(0, 3, 400)})
    df.index = df.index * 3 + 7  # not a range: results must align by label
    pd.testing.assert_series_equal(_duplicated(df, ["k"]), df.duplicated(["k"], keep="first"))
    pd.testing.assert_series_equal(_duplicated(df, ["k", "m"]), df.duplicated(["k", "m"], keep="first"))
    keys = pd.Series([f"id{i}" for i in range(0, 50, 2)], dtype="string")
    pd.testing.assert_series_equal(_isin(df["k"], keys), df["k"].isin(keys), check_names=False)
    created = pd.Series(pd.date_range("2026-01-01", periods=len(keys), freq="D"))
    expected = df["k"].map(pd.Series(created.to_numpy(), index=keys.to_numpy()))
    pd.testing.assert_series_equal(_lookup(df["k"], keys, created), expected, check_names=False)


def test_blank_cells_are_those_trimming_empties():
    import pyarrow as pa
    import pyarrow.compute as pc

    from forecastkit.data.validate import _blank

    cells = ["", " ", "\t\n", "\u3000\u2003", "\u00a0", "\u200b", " a ", "a", "\u2028", None, "x\u3000"]
    arr = pa.chunked_array([pa.array(cells[:5]), pa.array(cells[5:])])
    assert _blank(arr).to_pylist() == pc.equal(pc.utf8_trim_whitespace(arr), "").to_pylist()


def test_ascending_ids_and_sorted_history_checks_match_a_sort():
    from forecastkit.data.validate import _duplicated, _sort_by_deal

    ids = pd.array([f"OPP-{i:03d}" for i in range(300)], dtype="string")
    df = pd.DataFrame({"opportunity_id": ids})
    assert not _duplicated(df, ["opportunity_id"]).any()  # ascending: no hashing needed
    df.loc[150, "opportunity_id"] = "OPP-149"  # a repeat in place keeps the order non-decreasing only
    pd.testing.assert_series_equal(_duplicated(df, ["opportunity_id"]), df.duplicated(["opportunity_id"]))
    rng = np.random.default_rng(1)
    h = pd.DataFrame(
        {
            "opportunity_id": pd.array(np.sort(rng.choice([f"O{i}" for i in range(40)], 200)), dtype="string"),
            "changed_at": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 90, 200), unit="D"),
        }
    )
    expected = h.sort_values(["opportunity_id", "changed_at"], kind="stable")
    pd.testing.assert_frame_equal(_sort_by_deal(h), expected)
    pd.testing.assert_frame_equal(_sort_by_deal(expected), expected)  # already sorted: the same frame
    assert _sort_by_deal(expected) is expected
