"""Small hand-built fixtures shared by the test suite.

``raw_tables`` is a tiny, fully valid CRM export (every cell as text, as read
from CSV): four deals of two accounts, their history, activities, orders and
the other optional tables. Each test gets a fresh copy, so it may edit it.
The snapshot date is 2026-06-30.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from forecastkit.data.crm import CRM
from forecastkit.playbook import Playbook

AS_OF = "2026-06-30"

_OPP_COLUMNS = [
    "opportunity_id",
    "account_id",
    "name",
    "owner",
    "team",
    "created_at",
    "close_date",
    "amount",
    "currency",
    "stage",
    "status",
    "closed_at",
    "forecast_category",
    "probability",
    "loss_reason",
    "next_step",
    "next_step_date",
    "budget",
    "decision_maker",
]

_OPPORTUNITIES = [
    # won deal
    [
        "O1",
        "A1",
        "Acme renewal",
        "alice",
        "north",
        "2026-01-05",
        "2026-03-31",
        "10000",
        "EUR",
        "won",
        "won",
        "2026-03-20",
        "closed",
        "1",
        "",
        "",
        "",
        "12000",
        "Jane CFO",
    ],
    # open deal in proposal
    [
        "O2",
        "A1",
        "Acme expansion",
        "bob",
        "south",
        "2026-02-01",
        "2026-07-15",
        "5000",
        "EUR",
        "proposal",
        "open",
        "",
        "best_case",
        "0.5",
        "",
        "send contract",
        "2026-07-01",
        "6000",
        "Jane CFO",
    ],
    # lost deal
    [
        "O3",
        "A2",
        "Globex pilot",
        "alice",
        "north",
        "2026-02-10",
        "2026-04-30",
        "8000",
        "EUR",
        "lost",
        "lost",
        "2026-04-15",
        "omitted",
        "0",
        "price",
        "",
        "",
        "",
        "",
    ],
    # open deal in discovery
    [
        "O4",
        "A2",
        "Globex rollout",
        "bob",
        "south",
        "2026-03-01",
        "2026-09-30",
        "12000",
        "EUR",
        "discovery",
        "open",
        "",
        "pipeline",
        "0.25",
        "",
        "demo",
        "2026-07-10",
        "",
        "",
    ],
]

_HISTORY = [
    ["O1", "2026-01-05", "qualification", "10000", "2026-03-31", "pipeline"],
    ["O1", "2026-02-15", "proposal", "10000", "2026-03-31", "commit"],
    ["O1", "2026-03-20", "won", "10000", "2026-03-31", "closed"],
    ["O2", "2026-02-01", "qualification", "4000", "2026-06-30", "pipeline"],
    ["O2", "2026-04-01", "proposal", "5000", "2026-07-15", "best_case"],
    ["O3", "2026-02-10", "discovery", "8000", "2026-04-30", "pipeline"],
    ["O3", "2026-04-15", "lost", "8000", "2026-04-30", "omitted"],
    ["O4", "2026-03-01", "to_contact", "12000", "2026-09-30", "pipeline"],
    ["O4", "2026-05-01", "discovery", "12000", "2026-09-30", "pipeline"],
]


def _frame(columns: list[str], rows: list[list[str]]) -> pd.DataFrame:
    """A raw table as read from CSV: text cells, empty cells missing."""
    df = pd.DataFrame(rows, columns=columns, dtype=object)
    return df.replace("", None)


def make_raw_tables() -> dict[str, pd.DataFrame]:
    """A fresh copy of the tiny valid CRM export (table name -> raw DataFrame)."""
    return {
        "opportunities": _frame(_OPP_COLUMNS, [list(r) for r in _OPPORTUNITIES]),
        "history": _frame(
            ["opportunity_id", "changed_at", "stage", "amount", "close_date", "forecast_category"],
            [list(r) for r in _HISTORY],
        ),
        "field_history": _frame(
            ["opportunity_id", "changed_at", "field", "old_value", "new_value"],
            [["O2", "2026-04-01", "next_step_date", "2026-04-15", "2026-07-01"]],
        ),
        "activities": _frame(
            ["activity_id", "opportunity_id", "account_id", "owner", "type", "created_at", "due_at", "done_at"],
            [
                ["T1", "O2", "A1", "bob", "call", "2026-03-30", "2026-04-02", "2026-04-02"],
                ["T2", "O4", "A2", "bob", "email", "2026-05-01", "2026-05-05", ""],
                ["T3", "", "A2", "alice", "visit", "2026-05-10", "2026-05-12", "2026-05-12"],
            ],
        ),
        "accounts": _frame(
            ["account_id", "name", "segment", "industry", "created_at"],
            [["A1", "Acme", "enterprise", "retail", "2025-11-01"], ["A2", "Globex", "smb", "energy", "2026-01-15"]],
        ),
        "contacts": _frame(
            ["contact_id", "account_id", "name", "job_title", "email"],
            [["C1", "A1", "Jane Doe", "CFO", "jane@acme.test"], ["C2", "A2", "John Roe", "CTO", "john@globex.test"]],
        ),
        "orders": _frame(
            [
                "order_id",
                "account_id",
                "owner",
                "opportunity_id",
                "ordered_at",
                "amount",
                "invoiced_at",
                "invoiced_amount",
            ],
            [["R1", "A1", "alice", "O1", "2026-03-25", "10000", "2026-04-05", "10000"]],
        ),
        "targets": _frame(
            ["owner", "team", "period", "metric", "amount"],
            [["alice", "", "2026-Q2", "bookings", "30000"], ["bob", "", "2026-Q2", "bookings", "25000"]],
        ),
        "forecast_calls": _frame(
            ["submitted_at", "owner", "period", "commit", "best_case"],
            [["2026-04-06", "alice", "2026-Q2", "10000", "18000"]],
        ),
        "reps": _frame(
            ["owner", "team", "manager", "start_date"],
            [["alice", "north", "carol", "2024-01-01"], ["bob", "south", "carol", "2025-06-01"]],
        ),
    }


@pytest.fixture
def raw_tables() -> dict[str, pd.DataFrame]:
    """Tiny valid CRM export as raw text tables; a fresh copy per test."""
    return make_raw_tables()


@pytest.fixture
def opp_raw() -> dict[str, pd.DataFrame]:
    """Only the opportunities and history of the tiny CRM (quicker to validate); a fresh copy per test."""
    raw = make_raw_tables()
    return {"opportunities": raw["opportunities"], "history": raw["history"]}


@pytest.fixture
def playbook() -> Playbook:
    """The default playbook."""
    return Playbook()


@pytest.fixture
def crm(raw_tables: dict[str, pd.DataFrame]) -> CRM:
    """The tiny CRM validated into a snapshot as of 2026-06-30."""
    return CRM.from_tables(raw_tables, as_of=AS_OF)


@pytest.fixture
def csv_folder(tmp_path: Path, raw_tables: dict[str, pd.DataFrame]) -> Path:
    """A snapshot folder holding the tiny CRM as raw CSV files (no crm.yaml)."""
    folder = tmp_path / "crm"
    folder.mkdir()
    for name, df in raw_tables.items():
        df.to_csv(folder / f"{name}.csv", index=False)
    return folder


#: a three-deal export (two open deals of ana, one won by bob) for the CLI and scheduled runs
TINY_EXPORT = """opportunity_id,owner,created_at,close_date,amount,stage,status,closed_at
o1,ana,2025-01-05,2025-09-01,100,discovery,open,
o2,ana,2025-02-20,2025-08-01,200,proposal,open,
o3,bob,2025-01-10,2025-03-20,300,won,won,2025-03-20
"""


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """A folder with :data:`TINY_EXPORT` as ``opportunities.csv`` and ``as_of: 2025-06-30``."""
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "opportunities.csv").write_text(TINY_EXPORT)
    (folder / "crm.yaml").write_text("as_of: 2025-06-30\n")
    return folder
