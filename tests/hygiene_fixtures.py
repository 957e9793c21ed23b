"""A small hand-built CRM for the hygiene tests (snapshot 2026-06-30), every answer computable by hand.

Deals (owner, stage since, cap):

* D1 ann, discovery since 2026-05-01 (60 d, cap 45 -> follow_up), budget empty, next step due 2026-06-20 (10 d overdue)
* D2 ann, proposal since 2026-03-01 (121 d, cap 30 -> abandon), next step without date
* D3 bob, to_contact since 2026-06-25 (5 d), no next step at all
* D4 ann, negotiation since 2026-06-01 (29 d, cap 30), next step due on the snapshot day
* D5 ann, won
* D6 bob, qualification since 2026-05-31 (30 d, cap 30: not over), budget empty (mandatory only from discovery)
* L1 bob, to_contact lead created 2026-06-01 09:00, still in outreach (cadence)
* L2 bob, to_contact lead created 2026-06-01 08:00, qualified 2026-06-04 12:00 (cadence stops)
"""

from __future__ import annotations

import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.playbook import Playbook

AS_OF = "2026-06-30"

OPP_COLS = [
    "opportunity_id",
    "account_id",
    "name",
    "owner",
    "team",
    "created_at",
    "close_date",
    "amount",
    "stage",
    "status",
    "closed_at",
    "next_step",
    "next_step_date",
    "budget",
    "decision_maker",
]
OPPS = [
    [
        "D1",
        "A1",
        "Acme rollout",
        "ann",
        "north",
        "2026-04-01",
        "2026-09-30",
        "10000",
        "discovery",
        "open",
        "",
        "demo",
        "2026-06-20",
        "",
        "CFO",
    ],
    [
        "D2",
        "A1",
        "Acme <b>extension</b>",
        "ann",
        "north",
        "2026-02-01",
        "2026-07-31",
        "20000",
        "proposal",
        "open",
        "",
        "call back",
        "",
        "25000",
        "CEO",
    ],
    [
        "D3",
        "A2",
        "Globex pilot",
        "bob",
        "south",
        "2026-06-25",
        "2026-12-31",
        "4000",
        "to_contact",
        "open",
        "",
        "",
        "",
        "",
        "",
    ],
    [
        "D4",
        "A2",
        "Globex deal",
        "ann",
        "north",
        "2026-04-15",
        "2026-07-15",
        "30000",
        "negotiation",
        "open",
        "",
        "sign",
        "2026-06-30",
        "30000",
        "CFO",
    ],
    [
        "D5",
        "A1",
        "Acme renewal",
        "ann",
        "north",
        "2026-01-05",
        "2026-03-31",
        "8000",
        "won",
        "won",
        "2026-03-20",
        "",
        "",
        "9000",
        "CFO",
    ],
    [
        "D6",
        "A3",
        "Initech",
        "bob",
        "south",
        "2026-05-31",
        "2026-10-31",
        "6000",
        "qualification",
        "open",
        "",
        "call",
        "2026-07-02",
        "",
        "",
    ],
    [
        "L1",
        "A3",
        "Initech lead",
        "bob",
        "south",
        "2026-06-01T09:00:00",
        "2026-12-31",
        "3000",
        "to_contact",
        "open",
        "",
        "call",
        "2026-07-01",
        "",
        "",
    ],
    [
        "L2",
        "A2",
        "Globex lead",
        "bob",
        "south",
        "2026-06-01T08:00:00",
        "2026-12-31",
        "2000",
        "qualification",
        "open",
        "",
        "call",
        "2026-07-01",
        "",
        "",
    ],
]
HIST = [
    ["D1", "2026-04-01", "qualification"],
    ["D1", "2026-05-01", "discovery"],
    ["D2", "2026-02-01", "discovery"],
    ["D2", "2026-03-01", "proposal"],
    ["D3", "2026-06-25", "to_contact"],
    ["D4", "2026-04-15", "proposal"],
    ["D4", "2026-06-01", "negotiation"],
    ["D5", "2026-01-05", "proposal"],
    ["D5", "2026-03-20", "won"],
    ["D6", "2026-05-31", "qualification"],
    ["L1", "2026-06-01T09:00:00", "to_contact"],
    ["L2", "2026-06-01T08:00:00", "to_contact"],
    ["L2", "2026-06-04T12:00:00", "qualification"],
]
ACT_COLS = [
    "activity_id",
    "opportunity_id",
    "account_id",
    "owner",
    "type",
    "cadence_step",
    "created_at",
    "due_at",
    "done_at",
    "report",
    "report_context",
    "report_discovery",
    "report_proofs",
    "report_risks",
    "report_next_step",
]
ACTS = [
    # L1 cadence: d0_call on time, d0_email late (1 day), d2_social logged not done, d5/d9 not logged, d14 pending
    ["C1", "L1", "A3", "bob", "call", "d0_call", "2026-06-01T09:00:00", "2026-06-01T09:00:00", "2026-06-01T15:00:00"]
    + [""] * 6,
    ["C2", "L1", "A3", "bob", "email", "d0_email", "2026-06-01T09:00:00", "2026-06-01T09:00:00", "2026-06-02T10:00:00"]
    + [""] * 6,
    ["C3", "L1", "A3", "bob", "social", "d2_social", "2026-06-01T09:00:00", "2026-06-03T09:00:00", ""] + [""] * 6,
    # L2 cadence: d0 both on time, d2_social not logged (missed), left outreach on 2026-06-04 12:00
    ["C4", "L2", "A2", "bob", "call", "d0_call", "2026-06-01T08:00:00", "2026-06-01T08:00:00", "2026-06-01T08:30:00"]
    + [""] * 6,
    ["C5", "L2", "A2", "bob", "email", "d0_email", "2026-06-01T08:00:00", "2026-06-01T08:00:00", "2026-06-01T09:00:00"]
    + [""] * 6,
    # visits
    [
        "V1",
        "D1",
        "A1",
        "ann",
        "visit",
        "",
        "2026-06-10",
        "2026-06-10",
        "2026-06-10",
        "full report",
        "true",
        "true",
        "true",
        "true",
        "true",
    ],
    ["V2", "D1", "A1", "ann", "visit", "", "2026-06-11", "2026-06-11", "2026-06-11"] + [""] * 6,
    [
        "V3",
        "D4",
        "A2",
        "ann",
        "meeting",
        "",
        "2026-06-12",
        "2026-06-12",
        "2026-06-12",
        "notes",
        "true",
        "true",
        "false",
        "true",
        "true",
    ],
    [
        "V4",
        "D2",
        "A1",
        "ann",
        "visit",
        "",
        "2026-06-13",
        "2026-06-13",
        "2026-06-13",
        "Context: budget freeze. Next step: call on Monday",
        "",
        "",
        "",
        "",
        "",
    ],
    ["V5", "D1", "A1", "ann", "visit", "", "2026-06-14", "2026-07-14", ""] + [""] * 6,
    ["V6", "D1", "A1", "ann", "call", "", "2026-06-15", "2026-06-15", "2026-06-15"] + [""] * 6,
]
CONTACT_COLS = ["contact_id", "account_id", "name", "job_title", "department", "email", "phone", "created_at"]
CONTACTS = [
    ["K1", "A1", "Jane Doe", "CFO", "Finance", "jane@acme.test", "+33 1 23 45 67 89", "2026-01-10"],
    ["K2", "A1", "John Roe", "CTO", "", "n/a", "", "2026-02-15"],
    ["K3", "A2", "Jane Twin", "Buyer", "Purchasing", "JANE@acme.test", "0000", "2026-02-20"],
    ["K4", "A3", "Ida Ng", "CEO", "Management", "ida@initech.test", "(01) 23-45-67-89", "2026-06-01"],
]
ACCOUNT_COLS = ["account_id", "name", "segment", "industry", "owner", "created_at", "phone", "website"]
ACCOUNTS = [
    ["A1", "Acme", "enterprise", "retail", "ann", "2025-12-01", "+33 1 00 00 00 01", "acme.test"],
    ["A2", "Globex", "smb", "energy", "", "2026-02-10", "", ""],
    ["A3", "Initech", "smb", "software", "bob", "2026-05-20", "+33 1 00 00 00 03", "initech.test"],
]


def _frame(cols: list[str], rows: list[list[str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=cols, dtype=object).replace("", None)


def raw_tables() -> dict[str, pd.DataFrame]:
    """Fresh raw (text) tables."""
    opps = _frame(OPP_COLS, [list(r) for r in OPPS])
    close = {r[0]: r[6] for r in OPPS}
    amount = {r[0]: r[7] for r in OPPS}
    hist = pd.DataFrame(
        [[o, t, s, amount[o], close[o]] for o, t, s in HIST],
        columns=["opportunity_id", "changed_at", "stage", "amount", "close_date"],
    )
    field_history = _frame(
        ["opportunity_id", "changed_at", "field", "old_value", "new_value"],
        [["D1", "2026-06-12", "next_step_date", "2026-06-05", "2026-06-20"]],
    )
    return {
        "opportunities": opps,
        "history": hist,
        "field_history": field_history,
        "activities": _frame(ACT_COLS, [list(r) for r in ACTS]),
        "contacts": _frame(CONTACT_COLS, [list(r) for r in CONTACTS]),
        "accounts": _frame(ACCOUNT_COLS, [list(r) for r in ACCOUNTS]),
    }


def make_crm(playbook: Playbook | None = None, **drop: bool) -> CRM:
    """The hand-built CRM as of 2026-06-30 (``activities=False`` etc. leaves a table out)."""
    tables = {k: v for k, v in raw_tables().items() if drop.get(k, True)}
    return CRM.from_tables(tables, as_of=AS_OF, playbook=playbook, strict=True)
