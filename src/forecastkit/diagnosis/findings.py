"""The result types of a diagnosis: one :class:`Finding` per case and scope, gathered in a :class:`Diagnosis`."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

__all__ = ["Finding", "Diagnosis", "CASES", "ACTIONS", "EVIDENCE_COLUMNS"]

Status = Literal["detected", "not detected", "insufficient data"]
Severity = Literal["none", "low", "medium", "high"]

CASES = {
    1: "Wide pipeline, low conversion",
    2: "Good conversion, cycle too long",
    3: "Systematically optimistic forecast",
}

#: The prescribed actions of each case (the playbook's answer to the pattern).
ACTIONS = {
    1: (
        "Tighten the ideal customer profile: stop feeding the pipeline with leads that do not fit.",
        "Enforce MEDDIC on strategic accounts before a deal leaves discovery.",
        "Limit work in progress: reps over the WIP limit close out their weakest deals first.",
        "Strengthen proof: sector case studies for the segments that convert least.",
        "Kill unqualified opportunities fast (see the list below).",
    ),
    2: (
        "Checklists per stage: a deal moves only when the stage's exit criterion is met.",
        "A mutual evaluation plan with the customer: shared milestones and dates.",
        "Calendar follow-ups: every open deal has a dated next step.",
        "Involve legal and purchasing early, not at signature.",
        "Packaged offers with standard options to avoid back-and-forth.",
    ),
    3: (
        "Recalibrate stage probabilities to history (table below) and use them in the forecast.",
        "Peer reviews of commit deals: challenge those with a low calibrated probability (list below).",
        "Separate commit (sure) from best case (probable) in every forecast call.",
        "Discipline on close dates: a pushed deal is re-qualified, not just re-dated.",
    ),
}

#: Columns of :attr:`Finding.evidence`.
EVIDENCE_COLUMNS = ["metric", "value", "threshold", "comparison", "reference", "holds", "core", "trend", "n", "source"]

_LIGHT = {"high": "red", "medium": "orange", "low": "orange", "none": "green"}


@dataclass(frozen=True)
class Finding:
    """One case pattern judged on one scope (the company, a team or a rep).

    Attributes
    ----------
    case : int
        1, 2 or 3 (see :data:`CASES`).
    scope : str
        ``"company"``, ``"team=North"`` or ``"owner=Ana Ruiz"``.
    status : str
        ``"detected"``, ``"not detected"`` or ``"insufficient data"``.
    severity : str
        ``"none"``, ``"low"``, ``"medium"`` or ``"high"``.
    basis : str
        What "low" and "long" were judged against: the playbook's thresholds,
        and the company's own history when it is long enough.
    evidence : DataFrame
        One row per metric: ``metric, value, threshold, comparison`` (``above`` /
        ``below``: where the threshold is crossed), ``reference`` (where the
        threshold comes from), ``holds`` (the symptom is present), ``core`` (the
        metric decides detection; the others support it), ``trend`` (the value a
        year earlier, when known), ``n`` (deals or periods behind the value),
        ``source`` (the forecastkit function that computed it).
    actions : tuple of str
        The prescribed actions (only meaningful when detected).
    drilldown : mapping of str to DataFrame
        The deals, reps or stages that make the actions concrete.
    minimum_needed : str
        With insufficient data: what is missing.
    """

    case: int
    scope: str
    status: Status
    severity: Severity
    basis: str
    evidence: pd.DataFrame
    actions: tuple[str, ...] = ()
    drilldown: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    minimum_needed: str = ""

    @property
    def title(self) -> str:
        """The case's name."""
        return CASES[self.case]

    @property
    def detected(self) -> bool:
        """True when the pattern holds."""
        return self.status == "detected"

    @property
    def light(self) -> str:
        """Traffic light: red (high), orange (low/medium), green (not detected), grey (insufficient data)."""
        return "grey" if self.status == "insufficient data" else _LIGHT[self.severity]

    def _repr_html_(self) -> str:
        head = (
            f"<h4>Case {self.case} - {html.escape(self.title)} ({html.escape(self.scope)}): "
            f"{html.escape(self.status)}, severity {html.escape(self.severity)}</h4>"
            f"<p>Judged against: {html.escape(self.basis)}</p>"
        )
        if self.minimum_needed:
            head += f"<p>Insufficient data: {html.escape(self.minimum_needed)}</p>"
        return head + self.evidence.to_html(index=False)


@dataclass(frozen=True)
class Diagnosis:
    """The three case patterns, company-wide and per team / rep.

    Attributes
    ----------
    findings : tuple of Finding
        Every (case, scope) judged; company-wide scope first.
    as_of : Timestamp
        The snapshot date of the diagnosis.
    """

    findings: tuple[Finding, ...]
    as_of: pd.Timestamp

    def finding(self, case: int, scope: str = "company") -> Finding:
        """The finding of ``case`` for ``scope``."""
        for f in self.findings:
            if f.case == case and f.scope == scope:
                return f
        scopes = sorted({f.scope for f in self.findings})
        raise KeyError(f"no finding for case {case} and scope {scope!r}; scopes: {', '.join(scopes)}")

    @property
    def company(self) -> tuple[Finding, ...]:
        """The three company-wide findings."""
        return tuple(f for f in self.findings if f.scope == "company")

    def detected_cases(self, scope: str = "company") -> list[int]:
        """Cases detected for ``scope``, e.g. ``[1, 3]``."""
        return [f.case for f in self.findings if f.scope == scope and f.detected]

    def verdict(self) -> pd.DataFrame:
        """One row per (scope, case): ``scope, case, title, status, severity, light, basis``."""
        return pd.DataFrame(
            [
                {
                    "scope": f.scope,
                    "case": f.case,
                    "title": f.title,
                    "status": f.status,
                    "severity": f.severity,
                    "light": f.light,
                    "basis": f.basis,
                }
                for f in self.findings
            ]
        )

    def to_frame(self) -> pd.DataFrame:
        """Every evidence row of every finding, with its scope and case."""
        parts = [f.evidence.assign(scope=f.scope, case=f.case, status=f.status) for f in self.findings]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=EVIDENCE_COLUMNS)

    def _repr_html_(self) -> str:
        return f"<p><b>Diagnosis as of {self.as_of.date()}</b></p>" + self.verdict().to_html(index=False)
