"""Hand-built CRMs for the win/loss tests (every answer computable by hand).

``small_crm()`` - snapshot 2026-06-30, days counted from 2026-01-01 (day 0):

* A (ann, team north, smb): created to_contact day 0, qualification day 10, discovery day 30, won day 50.
  Champion set day 12 (before leaving qualification); amount 10 000, changed to 12 000 on day 35; close date
  2026-02-15 pushed to 2026-03-01 on day 20. Activities: calls done days 11 and 15, a meeting on day 40 (report
  with 3 of 5 boxes), an email planned but never done.
* B (ann, north, smb): created in qualification day 5, lost day 25 (reason "No decision"); champion set on day 26
  (after it left qualification). One call done on day 6.
* C (bob, north, enterprise): created to_contact day 0, jumped to discovery day 8 (skipping qualification),
  lost day 40 (reason "price"); no activity.
* D (bob, north, smb): created in qualification day 100, still open.
* E (cid, south, smb): created to_contact day 0, lost day 20 at to_contact (no reason, no activity -> abandoned).
"""

from __future__ import annotations

import pandas as pd

from forecastkit.data.crm import CRM

AS_OF = "2026-06-30"
T0 = pd.Timestamp("2026-01-01")


def day(d: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=d)


def small_tables() -> dict[str, pd.DataFrame]:
    opp = pd.DataFrame(
        [
            [
                "A",
                "ann",
                "north",
                "smb",
                "inbound",
                "core",
                day(0),
                day(50),
                12000.0,
                "won",
                day(50),
                None,
                "Acme",
                0.2,
            ],
            [
                "B",
                "ann",
                "north",
                "smb",
                "outbound",
                "core",
                day(5),
                day(25),
                5000.0,
                "lost",
                day(25),
                "No decision",
                None,
                0.0,
            ],
            [
                "C",
                "bob",
                "north",
                "enterprise",
                "partner",
                "core",
                day(0),
                day(40),
                90000.0,
                "lost",
                day(40),
                "price",
                "Globex",
                0.1,
            ],
            [
                "D",
                "bob",
                "north",
                "smb",
                "inbound",
                "core",
                day(100),
                day(200),
                7000.0,
                "qualification",
                None,
                None,
                None,
                None,
            ],
            ["E", "cid", "south", "smb", "event", "core", day(0), day(20), 3000.0, "lost", day(20), None, None, None],
        ],
        columns=[
            "opportunity_id",
            "owner",
            "team",
            "segment",
            "source",
            "product",
            "created_at",
            "close_date",
            "amount",
            "stage",
            "closed_at",
            "loss_reason",
            "competitor",
            "discount",
        ],
    )
    opp["champion"] = ["Jane (sponsor)", "Bob (sponsor)", None, None, None]
    hist = pd.DataFrame(
        [
            ["A", day(0), "to_contact", 10000.0, "2026-02-15"],
            ["A", day(10), "qualification", 10000.0, "2026-02-15"],
            ["A", day(20), "qualification", 10000.0, "2026-03-01"],
            ["A", day(30), "discovery", 10000.0, "2026-03-01"],
            ["A", day(35), "discovery", 12000.0, "2026-03-01"],
            ["A", day(50), "won", 12000.0, "2026-02-20"],
            ["B", day(5), "qualification", 5000.0, "2026-02-01"],
            ["B", day(25), "lost", 5000.0, "2026-01-26"],
            ["C", day(0), "to_contact", 90000.0, "2026-03-01"],
            ["C", day(8), "discovery", 90000.0, "2026-03-01"],
            ["C", day(40), "lost", 90000.0, "2026-02-10"],
            ["D", day(100), "qualification", 7000.0, "2026-07-20"],
            ["E", day(0), "to_contact", 3000.0, "2026-02-01"],
            ["E", day(20), "lost", 3000.0, "2026-01-21"],
        ],
        columns=["opportunity_id", "changed_at", "stage", "amount", "close_date"],
    )
    fh = pd.DataFrame(
        [
            ["A", day(12), "champion", None, "Jane (sponsor)"],
            ["B", day(26), "champion", None, "Bob (sponsor)"],
        ],
        columns=["opportunity_id", "changed_at", "field", "old_value", "new_value"],
    )
    act = pd.DataFrame(
        [
            ["X1", "A", "ann", "call", day(11), day(11), None, None, None, None, None, None],
            ["X2", "A", "ann", "call", day(15), day(15), None, None, None, None, None, None],
            ["X3", "A", "ann", "meeting", day(40), day(40), "ctx disc next", True, True, False, False, True],
            ["X4", "A", "ann", "email", day(45), None, None, None, None, None, None, None],
            ["X5", "B", "ann", "call", day(6), day(6), None, None, None, None, None, None],
        ],
        columns=[
            "activity_id",
            "opportunity_id",
            "owner",
            "type",
            "due_at",
            "done_at",
            "report",
            "report_context",
            "report_discovery",
            "report_proofs",
            "report_risks",
            "report_next_step",
        ],
    )
    return {"opportunities": opp, "history": hist, "field_history": fh, "activities": act}


def small_crm() -> CRM:
    return CRM.from_tables(small_tables(), as_of=AS_OF, strict=True)


def table_crm(cells: list[tuple[dict[str, object], int, int]], as_of: str = AS_OF) -> CRM:
    """A CRM of deals created in qualification and closed 10 days later.

    ``cells`` lists ``(attributes, n_won, n_lost)``: that many won and lost deals with those
    opportunity attributes (e.g. ``{"champion": "x", "segment": "smb"}``); fields given are set
    at creation (no field history, so they count as known at every stage).
    """
    rows, hist = [], []
    i = 0
    for attrs, n_won, n_lost in cells:
        for won in [True] * n_won + [False] * n_lost:
            i += 1
            oid = f"T{i:05d}"
            created = day(i % 90)
            closed = created + pd.Timedelta(days=10)
            status = "won" if won else "lost"
            rows.append(
                {
                    "opportunity_id": oid,
                    "owner": attrs.get("owner", "ann"),
                    "created_at": created,
                    "close_date": closed,
                    "amount": 1000.0,
                    "stage": status,
                    "closed_at": closed,
                    **{k: v for k, v in attrs.items() if k != "owner"},
                }
            )
            hist.append([oid, created, "qualification", 1000.0, closed])
            hist.append([oid, closed, status, 1000.0, closed])
    h = pd.DataFrame(hist, columns=["opportunity_id", "changed_at", "stage", "amount", "close_date"])
    return CRM.from_tables({"opportunities": pd.DataFrame(rows), "history": h}, as_of=as_of, strict=True)
