"""Writers that export a canonical CRM snapshot into real CRM export formats (for the adapter round-trip tests).

Each writer reproduces the headers and value formats of the vendor's export, so the
adapters are tested on what a user's CRM actually produces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM

SF_STAGE = {
    "to_contact": "Prospecting",
    "qualification": "Qualification",
    "discovery": "Needs Analysis",
    "proposal": "Proposal/Price Quote",
    "negotiation": "Negotiation/Review",
    "won": "Closed Won",
    "lost": "Closed Lost",
}
SF_PROB = {
    "to_contact": 10,
    "qualification": 20,
    "discovery": 40,
    "proposal": 60,
    "negotiation": 80,
    "won": 100,
    "lost": 0,
}
SF_CAT_API = {
    "closed": "Closed",
    "commit": "Forecast",
    "best_case": "BestCase",
    "pipeline": "Pipeline",
    "omitted": "Omitted",
}
SF_CAT_NAME = {
    "closed": "Closed",
    "commit": "Commit",
    "best_case": "Best Case",
    "pipeline": "Pipeline",
    "omitted": "Omitted",
}
SF_CUSTOM = {
    "loss_reason": "Loss_Reason__c",
    "competitor": "Competitor__c",
    "segment": "Segment__c",
    "product": "Product__c",
    "discount": "Discount__c",
    "next_step_date": "Next_Step_Date__c",
    "budget": "Budget__c",
    "decision_maker": "Decision_Maker__c",
    "need": "Need__c",
    "timing": "Timing__c",
    "metrics": "Metrics__c",
    "decision_criteria": "Decision_Criteria__c",
    "decision_process": "Decision_Process__c",
    "pain": "Pain__c",
    "champion": "Champion__c",
}

#: Opportunity columns each format carries (compared after the round trip).
SF_API_COLUMNS = [
    "opportunity_id", "account_id", "name", "owner", "team", "business_unit", "segment", "source", "product",
    "created_at", "close_date", "amount", "currency", "stage", "status", "closed_at", "forecast_category",
    "probability", "loss_reason", "competitor", "discount", "next_step", "next_step_date", "budget",
    "decision_maker", "need", "timing", "metrics", "decision_criteria", "decision_process", "pain", "champion",
]  # fmt: skip
HISTORY_COLUMNS = ["opportunity_id", "changed_at", "stage", "amount", "close_date", "forecast_category"]


def _txt(s: pd.Series) -> pd.Series:
    return s.astype(object).where(s.notna(), "")


def sf_datetime(s: pd.Series) -> pd.Series:
    """``2023-10-28T20:45:25.000+0000``."""
    return _txt(s.dt.strftime("%Y-%m-%dT%H:%M:%S.000+0000"))


def sf_date(s: pd.Series) -> pd.Series:
    return _txt(s.dt.strftime("%Y-%m-%d"))


def _bool(s: pd.Series) -> pd.Series:
    return np.where(s, "true", "false")


def user_ids(crm: CRM) -> dict[str, str]:
    owners = sorted(
        set(crm.reps["owner"].dropna()) | set(crm.reps["manager"].dropna()) | set(crm.opportunities["owner"].dropna())
    )
    return {o: f"005{i:015d}" for i, o in enumerate(owners)}


def _number(s: pd.Series) -> pd.Series:
    return _txt(s.map(lambda v: f"{v:.2f}" if pd.notna(v) else v))


def write_salesforce_api(crm: CRM, folder: Path, *, deleted: int = 2) -> dict[str, Path]:
    """Opportunity.csv, OpportunityHistory.csv, OpportunityFieldHistory.csv, Account.csv, User.csv (Data Loader style)."""
    folder.mkdir(parents=True, exist_ok=True)
    o = crm.opportunities
    uid = user_ids(crm)
    opp = pd.DataFrame(
        {
            "Id": o["opportunity_id"],
            "IsDeleted": "false",
            "AccountId": _txt(o["account_id"]),
            "Name": _txt(o["name"]),
            "StageName": o["stage"].map(SF_STAGE),
            "Amount": _number(o["amount"]),
            "Probability": _txt((o["probability"] * 100).round(6).map(lambda v: f"{v:g}" if pd.notna(v) else v)),
            "ExpectedRevenue": _number(o["amount"] * o["probability"].fillna(0)),
            "CloseDate": sf_date(o["close_date"]),
            "Type": "New Business",
            "NextStep": _txt(o["next_step"]),
            "LeadSource": _txt(o["source"]),
            "IsClosed": _bool(o["status"] != "open"),
            "IsWon": _bool(o["status"] == "won"),
            "ForecastCategory": o["forecast_category"].map(SF_CAT_API).fillna(""),
            "ForecastCategoryName": o["forecast_category"].map(SF_CAT_NAME).fillna(""),
            "CurrencyIsoCode": _txt(o["currency"]),
            "OwnerId": o["owner"].map(uid),
            "CreatedDate": sf_datetime(o["created_at"]),
            "LastModifiedDate": sf_datetime(o["created_at"]),
            "LastActivityDate": "",
            "FiscalYear": o["close_date"].dt.year.astype(str),
            "FiscalQuarter": o["close_date"].dt.quarter.astype(str),
        }
    )
    for col, api in SF_CUSTOM.items():
        kind = o[col]
        if pd.api.types.is_datetime64_any_dtype(kind):
            opp[api] = sf_date(kind)
        elif pd.api.types.is_float_dtype(kind):
            opp[api] = _txt(kind.map(lambda v: f"{v:g}" if pd.notna(v) else v))
        else:
            opp[api] = _txt(kind)
    if deleted:
        junk = opp.head(deleted).copy()
        junk["Id"] = [f"006DELETED{i:08d}" for i in range(deleted)]
        junk["IsDeleted"] = "true"
        opp = pd.concat([opp.iloc[:3], junk, opp.iloc[3:]], ignore_index=True)
    h = crm.history
    hist = pd.DataFrame(
        {
            "Id": [f"008{i:015d}" for i in range(len(h))],
            "OpportunityId": h["opportunity_id"],
            "CreatedById": "005000000000000000",
            "CreatedDate": sf_datetime(h["changed_at"]),
            "StageName": h["stage"].map(SF_STAGE),
            "Amount": _number(h["amount"]),
            "ExpectedRevenue": "",
            "CloseDate": sf_date(h["close_date"]),
            "Probability": h["stage"].map(SF_PROB).astype(str),
            "ForecastCategory": h["forecast_category"].map(SF_CAT_API).fillna(""),
            "PrevAmount": "",
            "PrevCloseDate": "",
            "CurrencyIsoCode": "EUR",
            "IsDeleted": "false",
            "SystemModstamp": sf_datetime(h["changed_at"]),
        }
    )
    if deleted:
        junk = hist.head(deleted).copy()
        junk["IsDeleted"] = "true"
        junk["StageName"] = "Closed Won"
        hist = pd.concat([hist.iloc[:5], junk, hist.iloc[5:]], ignore_index=True)
    fh = crm.field_history
    api = {"next_step": "NextStep"} | SF_CUSTOM
    fhist = pd.DataFrame(
        {
            "Id": [f"017{i:015d}" for i in range(len(fh))],
            "OpportunityId": fh["opportunity_id"],
            "CreatedDate": sf_datetime(fh["changed_at"]),
            "Field": fh["field"].map(api),
            "OldValue": _txt(fh["old_value"]),
            "NewValue": _txt(fh["new_value"]),
            "IsDeleted": "false",
        }
    )
    fhist = pd.concat(
        [fhist, pd.DataFrame([{"Id": "017X", "OpportunityId": fh["opportunity_id"].iloc[0], "CreatedDate": fhist["CreatedDate"].iloc[0],
                               "Field": "created", "OldValue": "", "NewValue": "", "IsDeleted": "false"}])],
        ignore_index=True,
    )  # fmt: skip
    a = crm.accounts
    acc = pd.DataFrame(
        {
            "Id": a["account_id"],
            "Name": _txt(a["name"]),
            "Industry": _txt(a["industry"]),
            "Segment__c": _txt(a["segment"]),
            "OwnerId": a["owner"].map(uid).where(a["owner"].isin(list(uid)), a["owner"]).fillna(""),
            "CreatedDate": sf_datetime(a["created_at"]),
            "Phone": _txt(a["phone"]),
            "Website": _txt(a["website"]),
        }
    )
    r = crm.reps.set_index("owner")
    users = pd.DataFrame({"Id": list(uid.values()), "Name": list(uid.keys())})
    users["Department"] = _txt(users["Name"].map(r["team"]))
    users["Division"] = _txt(users["Name"].map(r["business_unit"]))
    users["ManagerId"] = _txt(users["Name"].map(r["manager"]).map(uid))
    users["IsActive"] = "true"
    paths = {}
    for name, df in (("Opportunity", opp), ("OpportunityHistory", hist), ("OpportunityFieldHistory", fhist),
                     ("Account", acc), ("User", users)):  # fmt: skip
        p = folder / f"{name}.csv"
        df.to_csv(p, index=False)
        paths[name] = p
    return paths


def money(v: float, currency: str, *, decimal: str = ".") -> str:
    """``USD 485,000.00`` (or ``EUR 485.000,00`` with ``decimal=','``)."""
    s = f"{v:,.2f}"
    if decimal == ",":
        s = s.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return f"{currency} {s}"


def write_salesforce_report(crm: CRM, folder: Path, *, dayfirst: bool = True, decimal: str = ".") -> dict[str, Path]:
    """An opportunity report and an opportunity-history report, as exported from Salesforce reports."""
    folder.mkdir(parents=True, exist_ok=True)
    fmt = "%d/%m/%Y" if dayfirst else "%m/%d/%Y"
    o = crm.opportunities
    rep = pd.DataFrame(
        {
            "Opportunity Owner": o["owner"],
            "Account Name": _txt(o["account_id"]),
            "Opportunity Name": _txt(o["name"]),
            "Type": "New Business",
            "Lead Source": _txt(o["source"]),
            "Amount": [money(v, c, decimal=decimal) for v, c in zip(o["amount"], o["currency"], strict=True)],
            "Probability (%)": _txt((o["probability"] * 100).map(lambda v: f"{v:g}%" if pd.notna(v) else v)),
            "Close Date": _txt(o["close_date"].dt.strftime(fmt)),
            "Created Date": _txt(o["created_at"].dt.strftime(fmt)),
            "Stage": o["stage"].map(SF_STAGE),
            "Forecast Category": o["forecast_category"].map(SF_CAT_NAME).fillna(""),
            "Fiscal Period": "Q" + o["close_date"].dt.quarter.astype(str) + "-" + o["close_date"].dt.year.astype(str),
            "Age": (crm.as_of_date - o["created_at"]).dt.days.astype(str),
            "Lost Reason": _txt(o["loss_reason"]),
            "Next Step": _txt(o["next_step"]),
            "Opportunity ID": o["opportunity_id"],
        }
    )
    rep.insert(1, "Opportunity Owner", o["owner"], allow_duplicates=True)  # duplicated header, same values
    h = crm.history
    hrep = pd.DataFrame(
        {
            "Opportunity ID": h["opportunity_id"],
            "Edit Date": h["changed_at"].dt.strftime(fmt + " %H:%M"),
            "To Stage": h["stage"].map(SF_STAGE),
            "Amount": [money(v, "EUR", decimal=decimal) for v in h["amount"]],
            "Close Date": h["close_date"].dt.strftime(fmt),
            "Forecast Category": h["forecast_category"].map(SF_CAT_NAME).fillna(""),
        }
    )
    paths = {}
    for name, df in (("report", rep), ("history_report", hrep)):
        p = folder / f"{name}.csv"
        text = df.to_csv(index=False)
        text += '"Grand Totals (' + str(len(df)) + ' records)"' + "," * (df.shape[1] - 1) + "\n"
        text += '"Copyright (c) 2000-2026 salesforce.com, inc. All rights reserved."' + "," * (df.shape[1] - 1) + "\n"
        p.write_text(text, encoding="utf-8")
        paths[name] = p
    return paths


def assert_same(a: pd.DataFrame, b: pd.DataFrame, columns: list[str], keys: list[str]) -> None:
    """Same rows and values on ``columns`` (after sorting on ``keys``); dtypes may differ."""
    x = a[columns].sort_values(keys, kind="stable").reset_index(drop=True)
    y = b[columns].sort_values(keys, kind="stable").reset_index(drop=True)
    for c in columns:
        if pd.api.types.is_float_dtype(x[c]) or pd.api.types.is_float_dtype(y[c]):
            np.testing.assert_allclose(x[c].astype(float), y[c].astype(float), rtol=1e-9, atol=1e-6, err_msg=c)
        else:
            xa, ya = x[c].astype(object), y[c].astype(object)
            pd.testing.assert_series_equal(
                xa.where(xa.notna(), None), ya.where(ya.notna(), None), check_names=False, obj=c
            )


# ----------------------------------------------------------------------------- HubSpot
HS_STAGE_ID = {
    "to_contact": "appointmentscheduled",
    "qualification": "qualifiedtobuy",
    "discovery": "presentationscheduled",
    "proposal": "decisionmakerboughtin",
    "negotiation": "contractsent",
    "won": "closedwon",
    "lost": "closedlost",
}
HS_STAGE_LABEL = {
    "to_contact": "Appointment Scheduled",
    "qualification": "Qualified To Buy",
    "discovery": "Presentation Scheduled",
    "proposal": "Decision Maker Bought-In",
    "negotiation": "Contract Sent",
    "won": "Closed Won",
    "lost": "Closed Lost",
}
HS_CAT = {"closed": "CLOSED", "commit": "COMMIT", "best_case": "BEST_CASE", "pipeline": "PIPELINE", "omitted": "OMIT"}


def last_entries(crm: CRM) -> pd.DataFrame:
    """Last entry time of each (deal, stage) - what HubSpot's date-entered properties keep."""
    from forecastkit.data.timeline import stage_spells

    sp = stage_spells(crm)
    return sp.groupby(["opportunity_id", "stage"], sort=False)["entered_at"].max().reset_index()


def write_hubspot(crm: CRM, folder: Path, *, ui: bool = False) -> dict[str, Path]:
    """deals.csv (API property names, or UI labels with ``ui=True``) and owners.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    o = crm.opportunities
    owners = sorted(o["owner"].dropna().unique())
    oid = {n: str(100 + i) for i, n in enumerate(owners)}
    iso = lambda s: _txt(s.dt.strftime("%Y-%m-%dT%H:%M:%S.000Z"))  # noqa: E731
    if ui:
        deals = pd.DataFrame(
            {
                "Record ID": o["opportunity_id"],
                "Deal Name": _txt(o["name"]),
                "Deal Stage": o["stage"].map(HS_STAGE_LABEL),
                "Pipeline": "Sales Pipeline",
                "Amount": _number(o["amount"]),
                "Close Date": _txt(o["close_date"].dt.strftime("%Y-%m-%d %H:%M")),
                "Create Date": _txt(o["created_at"].dt.strftime("%Y-%m-%d %H:%M:%S")),
                "Deal owner": o["owner"],
                "Deal Type": "New Business",
                "Deal probability": _txt(o["probability"].map(lambda v: f"{v:g}" if pd.notna(v) else v)),
                "Forecast category": o["forecast_category"].map({"best_case": "Best case", "omitted": "Omit"}).fillna(o["forecast_category"].str.title()),
                "Is Closed?": _bool(o["status"] != "open"),
                "Is closed won": _bool(o["status"] == "won"),
                "Next step": _txt(o["next_step"]),
                "Closed Lost Reason": _txt(o["loss_reason"]),
                "Currency": o["currency"],
            }
        )  # fmt: skip
    else:
        deals = pd.DataFrame(
            {
                "hs_object_id": o["opportunity_id"],
                "dealname": _txt(o["name"]),
                "dealstage": o["stage"].map(HS_STAGE_ID),
                "pipeline": "default",
                "amount": _number(o["amount"]),
                "closedate": iso(o["close_date"]),
                "createdate": iso(o["created_at"]),
                "hubspot_owner_id": o["owner"].map(oid),
                "dealtype": "newbusiness",
                "hs_deal_stage_probability": _txt(o["probability"].map(lambda v: f"{v:g}" if pd.notna(v) else v)),
                "hs_manual_forecast_category": o["forecast_category"].map(HS_CAT).fillna(""),
                "hs_is_closed": _bool(o["status"] != "open"),
                "hs_is_closed_won": _bool(o["status"] == "won"),
                "hs_next_step": _txt(o["next_step"]),
                "deal_currency_code": o["currency"],
                "closed_lost_reason": _txt(o["loss_reason"]),
            }
        )
    ent = last_entries(crm)
    for stage in HS_STAGE_ID:
        e = ent[ent["stage"] == stage].set_index("opportunity_id")["entered_at"]
        vals = o["opportunity_id"].map(e)
        if ui:
            deals[f'Date entered "{HS_STAGE_LABEL[stage]} (Sales Pipeline)"'] = _txt(
                vals.dt.strftime("%Y-%m-%d %H:%M:%S")
            )
        else:
            deals[f"hs_date_entered_{HS_STAGE_ID[stage]}"] = iso(vals - pd.Timedelta(days=1))  # stale v1 values
            deals[f"hs_v2_date_entered_{HS_STAGE_ID[stage]}"] = iso(vals)
    first_last = [n.split(" ", 1) + [""] * (2 - len(n.split(" ", 1))) for n in owners]
    own = pd.DataFrame({"id": [oid[n] for n in owners], "firstName": [f for f, _ in first_last],
                        "lastName": [la for _, la in first_last], "email": [f"{i}@x.test" for i in range(len(owners))]})  # fmt: skip
    paths = {"deals": folder / "deals.csv", "owners": folder / "owners.csv"}
    deals.to_csv(paths["deals"], index=False)
    own.to_csv(paths["owners"], index=False)
    return paths


# ----------------------------------------------------------------------------- Pipedrive
PD_STAGES = pd.DataFrame(
    {
        "id": [1, 2, 3, 4, 5],
        "name": ["Lead In", "Contact Made", "Needs Defined", "Proposal Made", "Negotiations Started"],
        "pipeline_id": 1,
        "order_nr": [1, 2, 3, 4, 5],
        "deal_probability": [5, 10, 25, 50, 75],
        "rotten_flag": ["true", "true", "false", "true", "true"],
        "rotten_days": [10, 21, "", 20, 14],
    }
)
PD_STAGE_ID = {"to_contact": 1, "qualification": 2, "discovery": 3, "proposal": 4, "negotiation": 5}


def write_pipedrive(crm: CRM, folder: Path, *, ui: bool = False) -> dict[str, Path]:
    """deals.csv (API fields, or ``Deal - ...`` headers with ``ui=True``) and stages.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    o = crm.opportunities
    h = crm.history
    open_h = h[~h["stage"].isin(["won", "lost"])]
    last_open = open_h.groupby("opportunity_id")["stage"].last()
    stage = o["stage"].where(o["status"] == "open", o["opportunity_id"].map(last_open)).fillna("to_contact")
    ts = lambda s: _txt(s.dt.strftime("%Y-%m-%d %H:%M:%S"))  # noqa: E731
    day = lambda s: _txt(s.dt.strftime("%Y-%m-%d"))  # noqa: E731
    won = o["closed_at"].where(o["status"] == "won")
    lost = o["closed_at"].where(o["status"] == "lost")
    users = {n: str(10 + i) for i, n in enumerate(sorted(o["owner"].unique()))}
    if ui:
        deals = pd.DataFrame(
            {
                "Deal - ID": o["opportunity_id"],
                "Deal - Title": _txt(o["name"]),
                "Deal - Value": _number(o["amount"]),
                "Deal - Currency": o["currency"],
                "Deal - Stage": stage.map(dict(zip(PD_STAGE_ID, PD_STAGES["name"], strict=True))),
                "Deal - Pipeline": "Pipeline",
                "Deal - Status": o["status"].str.title(),
                "Deal - Owner": o["owner"],
                "Deal - Organization": _txt(o["account_id"]),
                "Deal - Expected close date": day(o["close_date"]),
                "Deal - Deal created": ts(o["created_at"]),
                "Deal - Won time": ts(won),
                "Deal - Lost time": ts(lost),
                "Deal - Lost reason": _txt(o["loss_reason"]),
                "Deal - Next activity date": day(o["next_step_date"]),
                "Deal - Probability": _txt((o["probability"] * 100).map(lambda v: f"{v:g}" if pd.notna(v) else v)),
            }
        )
    else:
        deals = pd.DataFrame(
            {
                "id": o["opportunity_id"],
                "title": _txt(o["name"]),
                "value": _number(o["amount"]),
                "currency": o["currency"],
                "status": o["status"],
                "stage_id": stage.map(PD_STAGE_ID).astype(str),
                "pipeline_id": "1",
                "probability": _txt((o["probability"] * 100).map(lambda v: f"{v:g}" if pd.notna(v) else v)),
                "add_time": ts(o["created_at"]),
                "update_time": ts(o["created_at"]),
                "stage_change_time": "",
                "expected_close_date": day(o["close_date"]),
                "close_time": ts(o["closed_at"]),
                "won_time": ts(won),
                "lost_time": ts(lost),
                "lost_reason": _txt(o["loss_reason"]),
                "next_activity_date": day(o["next_step_date"]),
                "last_activity_date": "",
                "rotten_time": "",
                "user_id": o["owner"].map(users),
                "org_id": _txt(o["account_id"]),
            }
        )
        junk = deals.head(1).copy()
        junk["id"] = "DELETED-1"
        junk["status"] = "deleted"
        deals = pd.concat([deals.iloc[:2], junk, deals.iloc[2:]], ignore_index=True)
    paths = {"deals": folder / "deals.csv", "stages": folder / "stages.csv", "updates": folder / "updates.csv"}
    deals.to_csv(paths["deals"], index=False)
    PD_STAGES.to_csv(paths["stages"], index=False)
    pipedrive_updates(crm, stage).to_csv(paths["updates"], index=False)
    paths["users"] = {v: k for k, v in users.items()}  # type: ignore[assignment]
    return paths


def pipedrive_updates(crm: CRM, deal_stage: pd.Series) -> pd.DataFrame:
    """The deals' change log as Pipedrive exports it (``item_id, field_key, old_value, new_value, log_time``).

    One row per changed field between consecutive history rows; a move to won/lost is a ``status``
    change (Pipedrive keeps the last open ``stage_id``). Plus a change of an untracked field.
    """
    h = crm.history.sort_values(["opportunity_id", "changed_at"], kind="stable").reset_index(drop=True)
    prev = h.groupby("opportunity_id", sort=False).shift(1)
    later = prev["changed_at"].notna().to_numpy()
    closed = h["stage"].isin(["won", "lost"]).to_numpy()
    was_closed = prev["stage"].isin(["won", "lost"]).to_numpy()
    day = lambda s: s.dt.strftime("%Y-%m-%d")  # noqa: E731
    ids = {k: str(v) for k, v in PD_STAGE_ID.items()}
    parts = []
    for field, old, new, changed in (
        ("stage_id", prev["stage"].map(ids), h["stage"].map(ids),
         later & ~closed & (h["stage"] != prev["stage"]).to_numpy()),
        ("status", prev["stage"].where(was_closed, "open"), h["stage"].where(closed, "open"),
         later & (closed != was_closed)),
        ("value", _number(prev["amount"]), _number(h["amount"]), later & (h["amount"] != prev["amount"]).to_numpy()),
        ("expected_close_date", day(prev["close_date"]), day(h["close_date"]),
         later & (h["close_date"] != prev["close_date"]).to_numpy()),
    ):  # fmt: skip
        parts.append(
            pd.DataFrame(
                {
                    "item_id": h["opportunity_id"][changed],
                    "field_key": field,
                    "old_value": old[changed].astype(object),
                    "new_value": new[changed].astype(object),
                    "log_time": h["changed_at"][changed].dt.strftime("%Y-%m-%d %H:%M:%S"),
                }
            )
        )
    out = pd.concat(parts).sort_index(kind="stable").reset_index(drop=True)
    extra = out.head(1).assign(field_key="title", old_value="Old title", new_value="New title")
    return pd.concat([out, extra], ignore_index=True)


_CACHE: dict[int, object] = {}


def sample_company(seed: int = 0):
    """The small sample company (6 reps, ~1,750 deals), generated once per test session and seed."""
    if seed not in _CACHE:
        from forecastkit.data.sample import generate

        _CACHE[seed] = generate(seed=seed, n_reps=6)
    return _CACHE[seed]
