"""A tiny hand-built company for the forecast tests (answers computed by hand in the tests).

Snapshot 2026-11-20, period 2026-Q4 (2026-10-01 to 2026-12-31). Deals:

====  =====  ============  ======  ==========  ========  ==================
id    owner  stage         amount  close date  rep cat.  note
====  =====  ============  ======  ==========  ========  ==================
W1    alice  won           1000    2026-10-15  closed    won in the period
W0    alice  won           500     2026-09-20  closed    won last quarter
W2    bob    won           600     2026-09-10  closed    created 08-25 (late in Q3), won in Q3
L1    bob    lost          700     2026-10-05  omitted   lost in the period
A     alice  negotiation   2000    2026-12-10  commit    pushed once (11-15 -> 12-10)
B     bob    proposal      4000    2026-12-20  best_case
C     bob    discovery     8000    2027-02-15  pipeline  dated next quarter
D     alice  qualification 3000    2026-11-30  omitted
====  =====  ============  ======  ==========  ========  ==================

CRM default probabilities (playbook): negotiation 0.75, proposal 0.50, discovery 0.25,
qualification 0.10. Targets: alice 5000, bob 3000 for 2026-Q4 (bookings). Calls: alice
1000 (11-06) then 2500 / best 5000 (11-13); bob 500 / 900 (11-13).
"""

from __future__ import annotations

import pandas as pd

from forecastkit.data.crm import CRM

AS_OF = "2026-11-20"

_OPPS = [
    # id, owner, team, created, close_date, amount, stage, status, closed_at, category
    ("W1", "alice", "north", "2026-09-01", "2026-10-15", 1000, "won", "won", "2026-10-15", "closed"),
    ("W0", "alice", "north", "2026-07-01", "2026-09-20", 500, "won", "won", "2026-09-20", "closed"),
    ("W2", "bob", "south", "2026-08-25", "2026-09-10", 600, "won", "won", "2026-09-10", "closed"),
    ("L1", "bob", "south", "2026-08-01", "2026-10-05", 700, "lost", "lost", "2026-10-05", "omitted"),
    ("A", "alice", "north", "2026-09-01", "2026-12-10", 2000, "negotiation", "open", None, "commit"),
    ("B", "bob", "south", "2026-09-15", "2026-12-20", 4000, "proposal", "open", None, "best_case"),
    ("C", "bob", "south", "2026-10-01", "2027-02-15", 8000, "discovery", "open", None, "pipeline"),
    ("D", "alice", "north", "2026-10-10", "2026-11-30", 3000, "qualification", "open", None, "omitted"),
]

_HISTORY = [
    ("W1", "2026-09-01", "proposal", 1000, "2026-10-15", "best_case"),
    ("W1", "2026-10-15", "won", 1000, "2026-10-15", "closed"),
    ("W0", "2026-07-01", "discovery", 500, "2026-09-20", "pipeline"),
    ("W0", "2026-09-20", "won", 500, "2026-09-20", "closed"),
    ("W2", "2026-08-25", "negotiation", 600, "2026-09-10", "commit"),
    ("W2", "2026-09-10", "won", 600, "2026-09-10", "closed"),
    ("L1", "2026-08-01", "discovery", 700, "2026-10-05", "pipeline"),
    ("L1", "2026-10-05", "lost", 700, "2026-10-05", "omitted"),
    ("A", "2026-09-01", "proposal", 2000, "2026-11-15", "best_case"),
    ("A", "2026-10-20", "negotiation", 2000, "2026-12-10", "commit"),
    ("B", "2026-09-15", "proposal", 4000, "2026-12-20", "best_case"),
    ("C", "2026-10-01", "discovery", 8000, "2027-02-15", "pipeline"),
    ("D", "2026-10-10", "qualification", 3000, "2026-11-30", "omitted"),
]


def tables() -> dict[str, pd.DataFrame]:
    """Fresh raw tables of the tiny company."""
    opps = pd.DataFrame(
        _OPPS,
        columns=[
            "opportunity_id",
            "owner",
            "team",
            "created_at",
            "close_date",
            "amount",
            "stage",
            "status",
            "closed_at",
            "forecast_category",
        ],
    )
    opps["name"] = "Deal " + opps["opportunity_id"]
    hist = pd.DataFrame(
        _HISTORY, columns=["opportunity_id", "changed_at", "stage", "amount", "close_date", "forecast_category"]
    )
    targets = pd.DataFrame(
        {
            "owner": ["alice", "bob"],
            "team": [None, None],
            "period": ["2026-Q4", "2026-Q4"],
            "metric": ["bookings", "bookings"],
            "amount": [5000.0, 3000.0],
        }
    )
    calls = pd.DataFrame(
        {
            "submitted_at": ["2026-11-06", "2026-11-13", "2026-11-13"],
            "owner": ["alice", "alice", "bob"],
            "period": ["2026-Q4"] * 3,
            "commit": [1000.0, 2500.0, 500.0],
            "best_case": [1500.0, 5000.0, 900.0],
        }
    )
    reps = pd.DataFrame({"owner": ["alice", "bob"], "team": ["north", "south"]})
    return {"opportunities": opps, "history": hist, "targets": targets, "forecast_calls": calls, "reps": reps}


def tiny_crm(**drop: bool) -> CRM:
    """The tiny company as a CRM; ``targets=False`` (etc.) leaves a table out."""
    t = {k: v for k, v in tables().items() if drop.get(k, True)}
    return CRM.from_tables(t, as_of=AS_OF)
