"""The canonical tables: columns, kinds, keys and the rules rows must follow.

This module is the contract between the adapters (which produce these tables)
and the analytics (which read them). Column kinds:

``str``    text (pandas ``string`` dtype), missing = <NA>
``date``   timestamp without time zone (``datetime64[ns]``), missing = NaT
``float``  number (``float64``), missing = NaN
``bool``   true/false (pandas ``boolean``), missing = <NA>

Only ``opportunities`` is required to load a CRM; every other table is
optional and analyses that need one say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Column", "Table", "TABLES", "TABLE_ORDER", "OPPORTUNITY_STATUSES", "ACTIVITY_TYPES", "REPORT_BOXES"]

Kind = Literal["str", "date", "float", "bool"]

OPPORTUNITY_STATUSES = ("open", "won", "lost")
ACTIVITY_TYPES = ("call", "email", "visit", "meeting", "social")
#: The five boxes of a visit report (domain section 7), as activity flag columns.
REPORT_BOXES = ("report_context", "report_discovery", "report_proofs", "report_risks", "report_next_step")


@dataclass(frozen=True)
class Column:
    """One column of a canonical table."""

    name: str
    kind: Kind
    required: bool = False
    description: str = ""
    nonnegative: bool = False
    allowed: tuple[str, ...] | None = None  # fixed allowed values (stages are checked against the playbook)


@dataclass(frozen=True)
class Table:
    """A canonical table: its columns, key and the date that says when a row became known."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    known_at: str | None = None  # column holding when the row became known (for as_of)
    description: str = ""
    references: dict[str, str] = field(default_factory=dict)  # column -> "table.column"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _c(name: str, kind: Kind, required: bool = False, description: str = "", **kw: object) -> Column:
    return Column(name, kind, required, description, **kw)  # type: ignore[arg-type]


_QUALIFICATION = (
    _c("budget", "float", description="BANT budget: the customer's stated budget (empty = unknown)", nonnegative=True),
    _c("decision_maker", "str", description="BANT authority / MEDDIC economic buyer: name or role (empty = unknown)"),
    _c("need", "str", description="BANT need: the need stated by the customer"),
    _c("timing", "date", description="BANT timing: when the customer wants to decide"),
    _c("metrics", "str", description="MEDDIC metrics: the quantified gain"),
    _c("decision_criteria", "str", description="MEDDIC decision criteria"),
    _c("decision_process", "str", description="MEDDIC decision process"),
    _c("pain", "str", description="MEDDIC identified pain"),
    _c("champion", "str", description="MEDDIC champion: who sells for us inside"),
)

OPPORTUNITIES = Table(
    "opportunities",
    (
        _c("opportunity_id", "str", True, "unique id of the deal"),
        _c("account_id", "str", description="the customer account"),
        _c("name", "str", description="deal name"),
        _c("owner", "str", True, "the rep who owns the deal"),
        _c("team", "str", description="the owner's team"),
        _c("business_unit", "str", description="the owner's business unit"),
        _c("segment", "str", description="customer segment, e.g. smb / mid_market / enterprise"),
        _c("source", "str", description="lead source, e.g. inbound / outbound / partner / event"),
        _c("product", "str", description="main product or offer"),
        _c("created_at", "date", True, "when the deal was created"),
        _c("close_date", "date", True, "expected close date while open; actual close date once closed"),
        _c("amount", "float", True, "deal value in the playbook currency", nonnegative=True),
        _c("currency", "str", description="ISO currency of amount; one currency per CRM unless rates are given"),
        _c("stage", "str", True, "current stage: a playbook stage, won or lost"),
        _c("status", "str", description="open / won / lost (derived from stage when absent)", allowed=OPPORTUNITY_STATUSES),
        _c("closed_at", "date", description="when the deal was won or lost (empty while open)"),
        _c("forecast_category", "str", description="the rep's category: commit / best_case / pipeline / omitted / closed",
           allowed=("closed", "commit", "best_case", "pipeline", "omitted")),
        _c("probability", "float", description="probability typed in the CRM (0-1); the playbook's stage default when absent"),
        _c("loss_reason", "str", description="why the deal was lost (known at close only)"),
        _c("competitor", "str", description="main competitor on the deal"),
        _c("discount", "float", description="discount granted, as a share of list price (0-1)", nonnegative=True),
        _c("next_step", "str", description="the next action, in words"),
        _c("next_step_date", "date", description="the date of the next action"),
        *_QUALIFICATION,
    ),
    key=("opportunity_id",),
    known_at="created_at",
    description="One row per deal, in its current (latest known) state.",
    references={"account_id": "accounts.account_id"},
)

HISTORY = Table(
    "history",
    (
        _c("opportunity_id", "str", True, "the deal that changed"),
        _c("changed_at", "date", True, "when the change was made"),
        _c("stage", "str", True, "stage after the change"),
        _c("amount", "float", True, "amount after the change", nonnegative=True),
        _c("close_date", "date", True, "expected close date after the change"),
        _c("forecast_category", "str", description="rep's forecast category after the change",
           allowed=("closed", "commit", "best_case", "pipeline", "omitted")),
    ),
    known_at="changed_at",
    description="One row per change of stage, amount, close date or category: the state after the change "
    "(like Salesforce OpportunityHistory). The creation of a deal is its first row.",
    references={"opportunity_id": "opportunities.opportunity_id"},
)

FIELD_HISTORY = Table(
    "field_history",
    (
        _c("opportunity_id", "str", True, "the deal that changed"),
        _c("changed_at", "date", True, "when the field changed"),
        _c("field", "str", True, "which opportunity column changed (e.g. next_step_date, budget)"),
        _c("old_value", "str", description="value before, as text (empty = was empty)"),
        _c("new_value", "str", description="value after, as text (empty = emptied)"),
    ),
    known_at="changed_at",
    description="Changes of other opportunity fields (like Salesforce OpportunityFieldHistory); lets as_of rewind "
    "qualification fields and next steps.",
    references={"opportunity_id": "opportunities.opportunity_id"},
)

ACTIVITIES = Table(
    "activities",
    (
        _c("activity_id", "str", True, "unique id"),
        _c("opportunity_id", "str", description="the deal it belongs to (may be empty)"),
        _c("account_id", "str", description="the account it belongs to"),
        _c("owner", "str", True, "who does it"),
        _c("type", "str", True, "call / email / visit / meeting / social", allowed=ACTIVITY_TYPES),
        _c("cadence_step", "str", description="outreach cadence step name (e.g. d2_social) when part of the cadence"),
        _c("created_at", "date", description="when it was planned or logged (defaults to due_at)"),
        _c("due_at", "date", True, "when it is or was due"),
        _c("done_at", "date", description="when it was done (empty = not done)"),
        _c("report", "str", description="visit/meeting report text"),
        *(_c(b, "bool", description=f"the report has its '{b[7:]}' box filled") for b in REPORT_BOXES),
    ),
    key=("activity_id",),
    known_at="created_at",
    description="Calls, emails, visits, meetings and social touches, planned or done.",
    references={"opportunity_id": "opportunities.opportunity_id"},
)

ACCOUNTS = Table(
    "accounts",
    (
        _c("account_id", "str", True, "unique id"),
        _c("name", "str", description="company name"),
        _c("segment", "str", description="customer segment"),
        _c("industry", "str", description="industry"),
        _c("owner", "str", description="account owner"),
        _c("created_at", "date", description="when the account was created"),
        _c("phone", "str", description="switchboard phone"),
        _c("website", "str", description="web site"),
    ),
    key=("account_id",),
    known_at="created_at",
    description="Customer and prospect companies.",
)

CONTACTS = Table(
    "contacts",
    (
        _c("contact_id", "str", True, "unique id"),
        _c("account_id", "str", description="the contact's company"),
        _c("name", "str", description="full name"),
        _c("job_title", "str", description="job title"),
        _c("department", "str", description="department"),
        _c("email", "str", description="e-mail address"),
        _c("phone", "str", description="phone number"),
        _c("created_at", "date", description="when the contact was created"),
    ),
    key=("contact_id",),
    known_at="created_at",
    description="People at accounts (completeness: name, job title, department, email, phone).",
    references={"account_id": "accounts.account_id"},
)

ORDERS = Table(
    "orders",
    (
        _c("order_id", "str", True, "unique id"),
        _c("account_id", "str", True, "the buying account"),
        _c("owner", "str", description="the rep credited"),
        _c("opportunity_id", "str", description="the deal that produced the order, if any"),
        _c("ordered_at", "date", True, "order date"),
        _c("amount", "float", True, "ordered amount, net of discount", nonnegative=True),
        _c("currency", "str", description="ISO currency of the amounts (converted with fx_rates when not the playbook's)"),
        _c("margin", "float", description="gross margin amount"),
        _c("discount", "float", description="discount granted (share of list price)", nonnegative=True),
        _c("invoiced_at", "date", description="invoice date (empty = not invoiced yet)"),
        _c("invoiced_amount", "float", description="invoiced amount", nonnegative=True),
        _c("promised_delivery", "date", description="delivery date promised to the customer"),
        _c("delivered_at", "date", description="actual delivery date (empty = not delivered yet)"),
    ),
    key=("order_id",),
    known_at="ordered_at",
    description="Orders and their invoicing and delivery.",
    references={"account_id": "accounts.account_id"},
)

TARGETS = Table(
    "targets",
    (
        _c("owner", "str", description="the rep (empty for a team target)"),
        _c("team", "str", description="the team (empty for a rep or company target)"),
        _c("period", "str", True, "fiscal period, e.g. 2026-Q4 or 2026-11"),
        _c("metric", "str", True, "bookings / invoiced / ordered / orders"),
        _c("amount", "float", True, "the target value", nonnegative=True),
    ),
    description="Quotas and targets per rep or team and period.",
)

FORECAST_CALLS = Table(
    "forecast_calls",
    (
        _c("submitted_at", "date", True, "when the rep submitted the call"),
        _c("owner", "str", True, "the rep"),
        _c("period", "str", True, "the fiscal period forecast"),
        _c("commit", "float", True, "the rep's commit call", nonnegative=True),
        _c("best_case", "float", True, "the rep's best-case call", nonnegative=True),
    ),
    known_at="submitted_at",
    description="Forecast calls submitted by reps (weekly).",
)

COSTS = Table(
    "costs",
    (
        _c("period", "str", True, "month, e.g. 2026-11"),
        _c("marketing", "float", True, "marketing costs", nonnegative=True),
        _c("sales", "float", True, "sales costs", nonnegative=True),
    ),
    description="Acquisition costs per month.",
)

SUBSCRIPTIONS = Table(
    "subscriptions",
    (
        _c("account_id", "str", True, "the subscribing account"),
        _c("month", "date", True, "first day of the month"),
        _c("mrr", "float", True, "monthly recurring revenue that month", nonnegative=True),
    ),
    key=("account_id", "month"),
    known_at="month",
    description="Monthly recurring revenue per account and month.",
)

REPS = Table(
    "reps",
    (
        _c("owner", "str", True, "the rep's name as used in owner columns"),
        _c("team", "str", description="team"),
        _c("business_unit", "str", description="business unit"),
        _c("manager", "str", description="manager"),
        _c("start_date", "date", description="hire date"),
        _c("end_date", "date", description="leave date (empty = still here)"),
    ),
    key=("owner",),
    description="Sales reps and their teams.",
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        OPPORTUNITIES, HISTORY, FIELD_HISTORY, ACTIVITIES, ACCOUNTS, CONTACTS,
        ORDERS, TARGETS, FORECAST_CALLS, COSTS, SUBSCRIPTIONS, REPS,
    )
}
TABLE_ORDER = tuple(TABLES)
