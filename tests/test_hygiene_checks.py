"""Unit tests of the hygiene checks on the hand-built CRM of ``hygiene_fixtures`` (answers computed by hand)."""

from __future__ import annotations

import pandas as pd
import pytest
from hygiene_fixtures import make_crm

import forecastkit as fk
from forecastkit.errors import ParameterError, PlaybookError, SchemaError
from forecastkit.hygiene.completeness import valid_email, valid_phone
from forecastkit.playbook import Playbook

h = fk.hygiene


@pytest.fixture(scope="module")
def crm():
    return make_crm()


# ------------------------------------------------------------------ aging
def test_aging_days_over_cap_and_action(crm):
    a = h.aging(crm).set_index("opportunity_id")
    # D2: 2026-03-01 -> 2026-06-30 = 121 days, cap 30, 121 > 3 x 30 -> abandon
    # D1: 2026-05-01 -> 2026-06-30 = 60 days, cap 45, 45 < 60 <= 90 -> follow_up
    # L1: 2026-06-01 09:00 -> 2026-06-30 = 28.625 days, cap 14, 28 < 28.625 <= 42 -> requalify
    assert list(a.index) == ["D2", "D1", "L1"]  # most days over the cap first
    assert a.loc["D2", "days_over_cap"] == 91
    assert a.loc["D1", "days_over_cap"] == 15
    assert a.loc["L1", "days_over_cap"] == pytest.approx(14.625)
    assert a["action"].tolist() == ["abandon", "follow_up", "requalify"]
    # D6: exactly 30 days in qualification (cap 30) is not over; D4: 29 days in negotiation
    assert "D6" not in a.index and "D4" not in a.index
    assert list(h.aging(crm).columns) == [
        "opportunity_id",
        "owner",
        "team",
        "account_id",
        "name",
        "stage",
        "amount",
        "probability",
        "entered_stage_at",
        "days_in_stage",
        "age_cap_days",
        "days_over_cap",
        "action",
    ]


def test_aging_action_agrees_with_playbook_rule(crm):
    a = h.aging(crm)
    for _, r in a.iterrows():
        assert r["action"] == crm.playbook.age_action(r["days_in_stage"], r["stage"])


def test_aging_cap_from_yaml_changes_result(tmp_path):
    path = tmp_path / "playbook.yaml"
    path.write_text("stages:\n  - {name: discovery, age_cap_days: 90}\n  - {name: qualification, age_cap_days: 29}\n")
    a = h.aging(make_crm(Playbook.from_yaml(path))).set_index("opportunity_id")
    assert "D1" not in a.index  # 60 days < new discovery cap 90
    assert a.loc["D6", "days_over_cap"] == 1  # 30 days > new qualification cap 29


def test_aging_actions_from_playbook():
    pb = Playbook.from_dict({"age_actions": {1.0: "follow_up", 5.0: "abandon"}})
    a = h.aging(make_crm(pb)).set_index("opportunity_id")
    assert a.loc["D2", "action"] == "follow_up"  # 121 days < 5 x 30
    assert a.loc["L1", "action"] == "follow_up"


def test_aging_owner_and_team_filters(crm):
    assert set(h.aging(crm, owner="bob")["opportunity_id"]) == {"L1"}
    assert set(h.aging(crm, team=["north"])["opportunity_id"]) == {"D1", "D2"}
    with pytest.raises(ParameterError, match="owner must be a name or a list of names"):
        h.aging(crm, owner=3)


# ------------------------------------------------------- mandatory fields
def test_missing_fields_by_field(crm):
    m = h.missing_fields(crm, by="field")
    # D1 in discovery has no budget; D2 has no next_step_date (from qualification); D6 in qualification
    # lacks budget and decision maker, but those are due only from discovery; D3 is in to_contact.
    assert m[["opportunity_id", "field", "required_from"]].values.tolist() == [
        ["D1", "budget", "discovery"],
        ["D2", "next_step_date", "qualification"],
    ]


def test_missing_fields_by_deal_lists_fields():
    pb = Playbook.from_dict({"mandatory_fields": {"budget": "qualification", "decision_maker": "qualification"}})
    m = h.missing_fields(make_crm(pb)).set_index("opportunity_id")
    # D6 (qualification) now misses both; L2 too; D3 / L1 are still in to_contact
    assert m.loc["D6", "missing_fields"] == "budget, decision_maker"
    assert m.loc["D6", "n_missing"] == 2
    assert m.loc["L2", "n_missing"] == 2
    assert "D3" not in m.index and "L1" not in m.index


def test_missing_fields_errors(crm):
    with pytest.raises(ParameterError, match="by must be 'deal' or 'field'"):
        h.missing_fields(crm, by="owner")
    pb = Playbook.from_dict({"mandatory_fields": {"budjet": "discovery"}})
    with pytest.raises(PlaybookError, match="'budjet', which is not an opportunity column"):
        h.missing_fields(make_crm(pb))


# ------------------------------------------------------------ next steps
def test_next_steps_problems(crm):
    n = h.next_steps(crm).set_index("opportunity_id")
    assert n.loc["D1", "problem"] == "overdue" and n.loc["D1", "days_overdue"] == 10
    assert n.loc["D2", "problem"] == "undated"
    assert n.loc["D3", "problem"] == "missing"
    assert "D4" not in n.index  # due on the snapshot day: not overdue yet
    assert set(n.index) == {"D1", "D2", "D3"}


def test_next_steps_as_of_uses_the_value_known_then(crm):
    # on 2026-06-10 D1's next step was due 2026-06-05 (field_history), so 5 days overdue
    n = h.next_steps(crm.as_of("2026-06-10")).set_index("opportunity_id")
    assert n.loc["D1", "days_overdue"] == 5
    # on 2026-06-04 D1's next step was due the next day: nothing to flag
    n = h.next_steps(crm.as_of("2026-06-04")).set_index("opportunity_id")
    assert "D1" not in n.index


# -------------------------------------------------------------------- WIP
def test_wip_counts_active_deals_and_close_out():
    pb = Playbook.from_dict({"wip_limit": 2})
    w = h.wip(make_crm(pb))
    by = w.by_owner.set_index("owner")
    # ann: D1 discovery, D2 proposal, D4 negotiation = 3 active; bob: D6, L2 qualification = 2 (D3, L1 to_contact)
    assert by.loc["ann", "active_deals"] == 3 and by.loc["ann", "over_limit"] == 1
    assert by.loc["ann", "status"] == "over" and by.loc["bob", "status"] == "at"
    assert by.loc["ann", "load"] == pytest.approx(1.5)
    # lowest probability first: D1 (discovery, 0.25)
    assert w.close_out[["opportunity_id", "rank"]].values.tolist() == [["D1", 1]]


def test_wip_limit_from_playbook_changes_result(crm):
    assert h.wip(crm).close_out.empty  # default limit 25
    w = h.wip(make_crm(Playbook.from_dict({"wip_limit": 1})))
    assert w.close_out.groupby("owner").size().to_dict() == {"ann": 2, "bob": 1}
    ann = w.close_out[w.close_out["owner"] == "ann"]
    assert ann["opportunity_id"].tolist() == ["D1", "D2"]  # 0.25 then 0.50
    # bob's two qualification deals tie on probability: the older one (D6, created 2026-05-31) goes first
    assert w.close_out.loc[w.close_out["owner"] == "bob", "opportunity_id"].tolist() == ["D6"]


# ---------------------------------------------------------------- cadence
def test_cadence_statuses(crm):
    s = h.cadence(crm).steps
    got = {(r.opportunity_id, r.cadence_step): (r.status, r.days_late) for r in s.itertuples()}
    # L1 (started 2026-06-01 09:00, still in outreach)
    assert got[("L1", "d0_call")] == ("on_time", 0)
    assert got[("L1", "d0_email")] == ("late", 1)
    assert got[("L1", "d2_social")] == ("missed", 27)  # logged, never done, due 06-03
    assert got[("L1", "d5_reminder")] == ("missed", 24)  # never logged, due 06-06
    assert got[("L1", "d14_call")] == ("missed", 15)
    # L2 left outreach on 06-04 12:00: d2 (06-03) expected, d5 onwards not
    assert got[("L2", "d2_social")] == ("missed", 27)
    assert ("L2", "d5_reminder") not in got
    # D3 created 06-25 in to_contact with no cadence activity: D0 due at creation; D5 due on the snapshot day
    assert got[("D3", "d0_call")] == ("missed", 5)
    assert got[("D3", "d5_reminder")] == ("pending", 0)
    # deals that did not start in the first stage are not leads
    assert not set(s["opportunity_id"]) & {"D1", "D2", "D4", "D5", "D6"}


def test_cadence_compliance_per_owner(crm):
    b = h.cadence(crm).by_owner.set_index("owner")
    # bob: L1 1 on time, 1 late, 4 missed; L2 2 on time, 1 missed; D3 3 missed, 3 pending
    assert b.loc["bob", ["leads", "steps_due", "on_time", "late", "missed", "pending"]].tolist() == [3, 12, 3, 1, 8, 3]
    assert b.loc["bob", "compliance_rate"] == pytest.approx(3 / 12)


def test_cadence_days_from_playbook_change_result():
    pb = Playbook.from_dict(
        {"cadence": [{"name": "d0_call", "day": 0, "type": "call"}, {"name": "d2_social", "day": 4, "type": "social"}]}
    )
    s = h.cadence(make_crm(pb)).steps
    got = {(r.opportunity_id, r.cadence_step): r.status for r in s.itertuples()}
    # d2_social is logged for L1 (due 06-03, kept as logged); for L2 not logged: due 06-05 > exit 06-04 12:00
    assert ("L2", "d2_social") not in got
    assert got[("L1", "d2_social")] == "missed"
    assert set(s["cadence_step"]) == {"d0_call", "d2_social"}


def test_cadence_needs_activities():
    with pytest.raises(SchemaError, match="cadence compliance needs the 'activities' table"):
        h.cadence(make_crm(activities=False))


def test_cadence_without_logged_steps_reports_nothing():
    from hygiene_fixtures import raw_tables

    t = raw_tables()
    t["activities"] = t["activities"][t["activities"]["cadence_step"].isna()]
    from forecastkit.data.crm import CRM

    c = h.cadence(CRM.from_tables(t, as_of="2026-06-30"))
    assert c.steps.empty and c.by_owner.empty


# ---------------------------------------------------------- visit reports
def test_visit_reports(crm):
    v = h.visit_reports(crm).set_index("activity_id")
    assert v.loc["V2", "problem"] == "no_report" and v.loc["V2", "n_missing"] == 5
    assert v.loc["V3", "problem"] == "incomplete_report" and v.loc["V3", "missing_boxes"] == "proofs"
    # V4 has text only: context, discovery ("budget") and next step found by keyword
    assert v.loc["V4", "missing_boxes"] == "proofs, risks"
    # V1 complete, V5 not done yet, V6 is a call
    assert set(v.index) == {"V2", "V3", "V4"}
    assert set(h.visit_reports(crm, types=["meeting"])["activity_id"]) == {"V3"}
    with pytest.raises(ParameterError, match="unknown activity type"):
        h.visit_reports(crm, types=["lunch"])


# ---------------------------------------------------------- completeness
def test_completeness_contacts(crm):
    c = h.completeness(crm)
    s = c.summary.set_index("entity")
    # 4 contacts x 5 fields = 20 cells; K2 lacks department and phone -> 18 filled
    assert s.loc["contacts", "completeness"] == pytest.approx(18 / 20)
    # invalid: K2 e-mail 'n/a', K3 phone '0000'; duplicate: K3 has K1's e-mail (case-insensitive)
    assert s.loc["contacts", "invalid_values"] == 2
    assert s.loc["contacts", "duplicates"] == 1
    # usable cells: K1 5 + K2 2 (name, title) + K3 0 (duplicate) + K4 5 = 12
    assert s.loc["contacts", "quality_index"] == pytest.approx(12 / 20)
    # accounts: A2 lacks owner, phone and website -> 15 of 18 cells
    assert s.loc["accounts", "completeness"] == pytest.approx(15 / 18)
    f = c.fields.set_index(["entity", "field"])
    assert f.loc[("contacts", "phone"), "completeness"] == pytest.approx(3 / 4)
    assert f.loc[("contacts", "email"), "invalid"] == 1


def test_completeness_by_account_and_owner(crm):
    c = h.completeness(crm)
    acc = c.by_account.set_index("account_id")
    assert acc.loc["A1", "missing"] == "department, phone"
    assert acc.loc["A2", ["invalid_values", "duplicates"]].tolist() == [1, 1]
    assert acc.loc["A2", "owner"] == "bob"  # no account owner: the owner of its latest deal (D3)
    assert "A3" not in acc.index
    own = c.by_owner.set_index("owner")
    assert own.loc["ann", "completeness"] == pytest.approx(8 / 10)
    assert own.loc["bob", "quality_index"] == pytest.approx(5 / 10)


def test_new_prospects_per_period(crm):
    np_ = h.completeness(crm, freq="quarter").new_prospects
    assert np_.values.tolist() == [["2025-Q4", 1, 0], ["2026-Q1", 1, 3], ["2026-Q2", 1, 1]]


def test_valid_email_and_phone():
    e = valid_email(pd.Series(["a@b.fr", "a@b", "x y@b.com", None]))
    assert e.tolist()[:3] == [True, False, False] and pd.isna(e.iloc[3])
    p = valid_phone(pd.Series(["+33 6 12 34 56 78", "0000", "12-34", "0000000000"]))
    assert p.tolist() == [True, False, False, False]


def test_completeness_errors(crm):
    with pytest.raises(SchemaError, match="data completeness needs the 'contacts' table"):
        h.completeness(make_crm(contacts=False))
    with pytest.raises(ParameterError, match=r"contact_fields: \['mobile'\] are not columns of the 'contacts' table"):
        h.completeness(crm, contact_fields=["name", "mobile"])


def test_phone_rule_with_separators_anywhere():
    p = valid_phone(
        pd.Series(["(+33) 6.12-34/56 78", "06\t12 34 56 78", "+ 0000 0000 00", "+33612345678901234", "1234567"])
    )
    assert p.tolist() == [True, True, False, False, False]


def test_contact_problems_match_completeness(crm):
    by_owner, by_account = h.contact_problems(crm)
    full = h.completeness(crm)
    pd.testing.assert_frame_equal(by_owner, full.by_owner)
    pd.testing.assert_frame_equal(by_account, full.by_account)
    with pytest.raises(ParameterError, match="contact_fields"):
        h.contact_problems(crm, contact_fields=["fax"])


def test_duplicate_names_ignore_case_and_spaces():
    from forecastkit.hygiene.completeness import _dup_key

    names = pd.Series(["John  Smith", " john smith", "John Smith", "Ann Lee", None], dtype="string")
    accounts = pd.Series(["A1", "A1", "A2", "A1", "A1"], dtype="string")
    assert _dup_key(accounts, names).tolist() == [False, True, False, False, False]
    assert _dup_key(names).tolist() == [False, True, True, False, False]
