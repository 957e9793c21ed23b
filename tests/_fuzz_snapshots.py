"""Hypothesis strategies that build small random VALID CRM snapshots, cheaply.

Tables are built directly (typed columns, no sample generator): a few reps, a
few deals with a consistent history (stages in pipeline order, dates
increasing, one closing row for won and lost deals), and optional tables that
may be absent, empty or small. The company is validated with
``CRM.from_tables`` as of the end of its window and then, sometimes, rewound
with ``crm.as_of`` to an earlier date (possibly before any deal closed or was
created).

Edge cases drawn on purpose: no deal at all, no closed deal, all lost, all
won, one open stage only, a single rep, zero amounts, no history table,
empty optional tables, many closed deals (enough for the win model).

``draw_snapshot`` also returns the facts used to build it (``Company``) so a
failing example prints readably, and ``describe`` gives a one-line summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from forecastkit.data.crm import CRM
from forecastkit.playbook import DEFAULT_PLAYBOOK

STAGES = [s.name for s in DEFAULT_PLAYBOOK.stages]
AMOUNTS = [0.0, 0.0, 1.0, 250.0, 5_000.0, 12_500.5, 120_000.0]
LOSS_REASONS = [None, "price", "Price ", "competitor", "no budget", "timing", "<script>alert(1)</script>"]
CATEGORIES = ["commit", "best_case", "pipeline", "omitted", None]
SEGMENTS = [None, "smb", "mid_market", "enterprise"]
SOURCES = [None, "inbound", "outbound", "partner"]
OUTCOMES = ("mixed", "all_open", "all_lost", "all_won", "no_lost")
OPTIONAL = (
    "history",
    "field_history",
    "activities",
    "accounts",
    "contacts",
    "orders",
    "targets",
    "forecast_calls",
    "costs",
    "subscriptions",
    "reps",
)


@dataclass
class Company:
    """What a drawn snapshot was built from (printed by hypothesis on failure)."""

    end: pd.Timestamp
    as_of: pd.Timestamp
    outcome: str
    n_reps: int
    n_deals: int
    one_stage: str | None
    tables: dict[str, str] = field(default_factory=dict)  # table -> "absent" / "empty" / "<n> rows"

    def __repr__(self) -> str:
        tabs = ", ".join(f"{k}={v}" for k, v in self.tables.items())
        return (
            f"Company(end={self.end.date()}, as_of={self.as_of.date()}, outcome={self.outcome}, reps={self.n_reps}, "
            f"deals={self.n_deals}, one_stage={self.one_stage}, {tabs})"
        )


def _ts(day0: pd.Timestamp, days: float) -> pd.Timestamp:
    return (day0 + pd.Timedelta(days=float(days))).floor("h")


@st.composite
def companies(draw: st.DrawFn, *, min_deals: int = 0, max_deals: int = 12, many: bool = False):
    """A random valid company: ``(raw tables, end date, Company facts)``.

    ``many=True`` draws 70-90 deals, most of them closed, so that the win model and
    the drivers' regressions have enough won and lost deals.
    """
    end = pd.Timestamp("2026-06-30") + pd.Timedelta(days=draw(st.integers(-400, 200)))
    span = draw(st.sampled_from([20, 120, 400, 900]))
    start = end - pd.Timedelta(days=span)
    n_reps = draw(st.integers(1, 3))
    n_teams = draw(st.integers(1, min(2, n_reps)))
    owners = [f"rep{i}" for i in range(n_reps)]
    teams = {o: f"team{i % n_teams}" for i, o in enumerate(owners)}
    n_deals = draw(st.integers(70, 90)) if many else draw(st.integers(min_deals, max_deals))
    outcome = "mixed" if many else draw(st.sampled_from(OUTCOMES))
    one_stage = draw(st.one_of(st.none(), st.sampled_from(STAGES)))
    zero_amounts = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)

    opps, hist = [], []
    for i in range(n_deals):
        oid = f"O{i}"
        owner = owners[int(rng.integers(n_reps))]
        created = _ts(start, rng.uniform(0, span))
        amount = 0.0 if zero_amounts and rng.random() < 0.5 else float(rng.choice(AMOUNTS))
        if one_stage is not None:
            path = [one_stage]
        else:
            first = int(rng.integers(len(STAGES)))
            last = int(rng.integers(first, len(STAGES)))
            path = STAGES[first : last + 1]
        if outcome == "all_open":
            fate = "open"
        elif outcome == "all_lost":
            fate = "lost"
        elif outcome == "all_won":
            fate = "won"
        elif outcome == "no_lost":
            fate = str(rng.choice(["open", "won"]))
        else:
            fate = str(rng.choice(["open", "won", "lost"], p=[0.2, 0.4, 0.4] if many else [0.4, 0.3, 0.3]))
        # stage changes, then the close; whatever falls after `end` is not known yet
        t = created
        events = []
        for s in path:
            events.append((t, s))
            t = _ts(t, rng.uniform(0, 40))
        if fate != "open":
            events.append((t, fate))
        events = [(when, s) for when, s in events if when <= end + pd.Timedelta(hours=23)]
        stage = events[-1][1]
        status = stage if stage in ("won", "lost") else "open"
        closed_at = events[-1][0].normalize() if status != "open" else pd.NaT
        expected_close = _ts(created, rng.uniform(0, 150)).normalize()
        close_date = closed_at if status != "open" else expected_close
        category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        opps.append(
            {
                "opportunity_id": oid,
                "account_id": f"A{int(rng.integers(max(1, n_deals // 2 + 1)))}",
                "name": f"Deal {i} <b>&amp;</b>",
                "owner": owner,
                "team": teams[owner] if rng.random() < 0.9 else None,
                "segment": SEGMENTS[int(rng.integers(len(SEGMENTS)))],
                "source": SOURCES[int(rng.integers(len(SOURCES)))],
                "product": None if rng.random() < 0.3 else f"p{int(rng.integers(2))}",
                "created_at": created,
                "close_date": close_date,
                "amount": amount,
                "currency": "EUR",
                "stage": stage,
                "status": status,
                "closed_at": closed_at,
                "forecast_category": category if status == "open" else None,
                "probability": np.nan if rng.random() < 0.5 else float(rng.choice([0.0, 0.1, 0.5, 0.9, 1.0])),
                "loss_reason": LOSS_REASONS[int(rng.integers(len(LOSS_REASONS)))] if status == "lost" else None,
                "competitor": None if rng.random() < 0.5 else "rival",
                "next_step": None if rng.random() < 0.3 else "call back",
                "next_step_date": pd.NaT if rng.random() < 0.3 else _ts(end, rng.uniform(-60, 60)).normalize(),
                "budget": np.nan if rng.random() < 0.5 else amount,
                "decision_maker": None if rng.random() < 0.5 else "CFO",
            }
        )
        for k, (when, s) in enumerate(events):
            hist.append(
                {
                    "opportunity_id": oid,
                    "changed_at": when,
                    "stage": s,
                    "amount": amount,
                    # one push in two: the expected close moves later on a later row
                    "close_date": (close_date if s in ("won", "lost") else expected_close)
                    - (pd.Timedelta(days=30) if k == 0 and len(events) > 1 and rng.random() < 0.5 else pd.Timedelta(0)),
                    "forecast_category": None if s in ("won", "lost") else category,
                }
            )
    opp_cols = list(opps[0]) if opps else ["opportunity_id", "owner", "created_at", "close_date", "amount", "stage"]
    tables: dict[str, pd.DataFrame] = {"opportunities": pd.DataFrame(opps, columns=opp_cols)}
    # history: close_date must not precede created_at (a push row dated before creation would be odd but allowed)
    hist_df = pd.DataFrame(
        hist, columns=["opportunity_id", "changed_at", "stage", "amount", "close_date", "forecast_category"]
    )
    hist_df["close_date"] = hist_df["close_date"].astype("datetime64[ns]")
    facts: dict[str, str] = {}
    kinds = {}
    for name in OPTIONAL:
        # accounts are never empty-but-present: other tables refer to them
        kinds[name] = draw(
            st.sampled_from(["absent", "full"] if name == "accounts" else ["absent", "empty", "full", "full"])
        )
    ids = [o["opportunity_id"] for o in opps]
    accounts = sorted({o["account_id"] for o in opps}) or ["A0"]

    def days(lo: float, hi: float) -> pd.Timestamp:
        return _ts(start, rng.uniform(lo, hi))

    builders = {
        "history": lambda: hist_df,
        "field_history": lambda: pd.DataFrame(
            [
                {
                    "opportunity_id": o["opportunity_id"],
                    "changed_at": _ts(o["created_at"], rng.uniform(0, 30)),
                    "field": "next_step_date",
                    "old_value": None,
                    "new_value": str(days(0, span).date()),
                }
                for o in opps[:3]
            ],
            columns=["opportunity_id", "changed_at", "field", "old_value", "new_value"],
        ),
        "activities": lambda: pd.DataFrame(
            [
                {
                    "activity_id": f"T{j}",
                    "opportunity_id": ids[int(rng.integers(len(ids)))] if ids and rng.random() < 0.8 else None,
                    "account_id": accounts[int(rng.integers(len(accounts)))],
                    "owner": owners[int(rng.integers(n_reps))],
                    "type": str(rng.choice(["call", "email", "visit", "meeting", "social"])),
                    "cadence_step": None if rng.random() < 0.6 else "d0_call",
                    "created_at": (c := days(0, span)),
                    "due_at": _ts(c, rng.uniform(0, 10)),
                    "done_at": pd.NaT if rng.random() < 0.3 else _ts(c, rng.uniform(0, 10)),
                    "report": None if rng.random() < 0.5 else "met the buyer",
                    "report_context": bool(rng.random() < 0.5),
                    "report_risks": None,
                }
                for j in range(int(rng.integers(0, 3 * n_deals + 2)))
            ],
            columns=[
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
                "report_risks",
            ],
        ),
        "accounts": lambda: pd.DataFrame(
            {
                "account_id": accounts,
                "name": [f"Acme {a}" for a in accounts],
                "segment": [SEGMENTS[1]] * len(accounts),
                "owner": [owners[k % n_reps] for k in range(len(accounts))],
                "created_at": [days(-100, 0) for _ in accounts],
            }
        ),
        "contacts": lambda: pd.DataFrame(
            {
                "contact_id": [f"C{k}" for k in range(len(accounts))],
                "account_id": accounts,
                "name": ["Jane Doe" if k % 2 else None for k in range(len(accounts))],
                "email": ["jane@acme.test" if k % 3 else "not-an-email" for k in range(len(accounts))],
                "phone": [None] * len(accounts),
            }
        ),
        "orders": lambda: pd.DataFrame(
            [
                {
                    "order_id": f"R{j}",
                    "account_id": accounts[int(rng.integers(len(accounts)))],
                    "owner": owners[int(rng.integers(n_reps))],
                    "ordered_at": (od := days(0, span)),
                    "amount": float(rng.choice(AMOUNTS)),
                    "margin": np.nan if rng.random() < 0.5 else 100.0,
                    "invoiced_at": pd.NaT if rng.random() < 0.3 else _ts(od, rng.uniform(0, 30)),
                    "invoiced_amount": np.nan,
                }
                for j in range(int(rng.integers(0, 8)))
            ],
            columns=[
                "order_id",
                "account_id",
                "owner",
                "ordered_at",
                "amount",
                "margin",
                "invoiced_at",
                "invoiced_amount",
            ],
        ),
        "targets": lambda: pd.DataFrame(
            [
                {
                    "owner": o,
                    "team": None,
                    "period": p.label,
                    "metric": "bookings",
                    "amount": float(rng.choice(AMOUNTS)),
                }
                for o in owners
                for p in _quarters(end, 3)
            ],
            columns=["owner", "team", "period", "metric", "amount"],
        ),
        "forecast_calls": lambda: pd.DataFrame(
            [
                {
                    "submitted_at": _ts(p.start, rng.uniform(0, 80)),
                    "owner": o,
                    "period": p.label,
                    "commit": float(rng.choice(AMOUNTS)),
                    "best_case": float(rng.choice(AMOUNTS)) * 2,
                }
                for o in owners
                for p in _quarters(end, 4)
                if rng.random() < 0.7
            ],
            columns=["submitted_at", "owner", "period", "commit", "best_case"],
        ),
        "costs": lambda: pd.DataFrame(
            {
                "period": [str((end - pd.DateOffset(months=k)).to_period("M")) for k in range(6)],
                "marketing": [float(rng.choice(AMOUNTS)) for _ in range(6)],
                "sales": [float(rng.choice(AMOUNTS)) for _ in range(6)],
            }
        ),
        "subscriptions": lambda: pd.DataFrame(
            [
                {
                    "account_id": a,
                    "month": (end - pd.DateOffset(months=k)).to_period("M").to_timestamp(),
                    "mrr": float(rng.choice([0.0, 100.0, 250.0])),
                }
                for a in accounts[:3]
                for k in range(int(rng.integers(0, 8)))
            ],
            columns=["account_id", "month", "mrr"],
        ),
        "reps": lambda: pd.DataFrame(
            {
                "owner": owners,
                "team": [teams[o] for o in owners],
                "manager": ["boss"] * n_reps,
                "start_date": [days(-400, -200) for _ in owners],
            }
        ),
    }
    for name in OPTIONAL:
        if kinds[name] == "absent":
            facts[name] = "absent"
            continue
        df = builders[name]()
        if kinds[name] == "empty":
            df = df.iloc[0:0]
        tables[name] = df
        facts[name] = f"{len(df)} rows"
    return tables, end, Company(end, end, outcome, n_reps, n_deals, one_stage, facts)


def _quarters(end: pd.Timestamp, n: int):
    """The fiscal quarter of ``end`` and the ``n - 1`` before it (default calendar)."""
    from forecastkit.periods import period_of

    q = period_of(end, "quarter")
    return [q.shift(-k) for k in range(n)]


@st.composite
def snapshots(draw: st.DrawFn, **kw) -> tuple[CRM, Company]:
    """A validated CRM snapshot of a random company, sometimes rewound to an earlier date."""
    tables, end, facts = draw(companies(**kw))
    crm = CRM.from_tables(tables, as_of=end)
    back = draw(st.sampled_from([0, 0, 0, 30, 200, 2000]))
    if back:
        crm = crm.as_of(end - pd.Timedelta(days=back))
    facts.as_of = crm.as_of_date
    return crm, facts
