"""The playbook: every company-specific rule in one object, loaded from YAML.

Stages and their CRM probabilities, age caps, mandatory fields, WIP limit,
forecast-category thresholds, traffic-light thresholds, the outreach cadence
and the fiscal calendar. Defaults follow the domain reference (``domain.md``
in the project docs); any key can be overridden in a YAML file::

    fiscal_year_start_month: 2
    wip_limit: 20
    stages:
      - {name: discovery, age_cap_days: 60}

Stages given in YAML replace the default list when they introduce new names;
when they only name existing stages, they update those stages' settings.
"""

from __future__ import annotations

import copy
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from forecastkit.errors import PlaybookError

__all__ = [
    "Stage",
    "CadenceStep",
    "Playbook",
    "DEFAULT_PLAYBOOK",
    "WON",
    "LOST",
    "CLOSED_STAGES",
    "FORECAST_CATEGORIES",
    "AGE_ACTIONS",
]

WON = "won"
LOST = "lost"
CLOSED_STAGES = (WON, LOST)
#: Forecast categories, from most to least certain (Salesforce's order).
FORECAST_CATEGORIES = ("closed", "commit", "best_case", "pipeline", "omitted")
#: Actions the playbook may prescribe for a deal older than its stage cap.
AGE_ACTIONS = ("follow_up", "requalify", "abandon")
_CADENCE_TYPES = ("call", "email", "social", "visit", "meeting")


@dataclass(frozen=True)
class Stage:
    """One open stage of the pipeline.

    Parameters
    ----------
    name : str
        Canonical stage name (snake_case), e.g. ``"discovery"``.
    label : str
        Display label.
    crm_probability : float
        The probability typed into the CRM for this stage (0-1).
    age_cap_days : int
        Days a deal may stay in the stage before it is "aging".
    exit_criteria : str
        The verifiable fact that lets a deal leave the stage.
    """

    name: str
    label: str
    crm_probability: float
    age_cap_days: int
    exit_criteria: str = ""


@dataclass(frozen=True)
class CadenceStep:
    """One touch of the outreach cadence: on day ``day`` from first touch."""

    name: str
    day: int
    type: str
    label: str = ""


_DEFAULT_STAGES = (
    Stage("to_contact", "To contact", 0.05, 14, "a first conversation took place"),
    Stage("qualification", "Qualification", 0.10, 30, "BANT confirmed: budget, authority, need, timing"),
    Stage(
        "discovery", "Discovery", 0.25, 45, "the buyer validated the decision criteria and the economic buyer is known"
    ),
    Stage("proposal", "Proposal", 0.50, 30, "a proposal was sent and reviewed with the economic buyer"),
    Stage("negotiation", "Negotiation", 0.75, 30, "terms agreed, signature date booked"),
)

_DEFAULT_CADENCE = (
    CadenceStep("d0_call", 0, "call", "D0 call"),
    CadenceStep("d0_email", 0, "email", "D0 value email"),
    CadenceStep("d2_social", 2, "social", "D2 social touch"),
    CadenceStep("d5_reminder", 5, "email", "D5 reminder"),
    CadenceStep("d9_case_study", 9, "email", "D9 case-study email"),
    CadenceStep("d14_call", 14, "call", "D14 call"),
)

#: Thresholds of the three case patterns (see ``forecastkit.diagnosis``).
_DEFAULT_DIAGNOSIS = {
    # case 1 - wide pipeline, low conversion
    "conversion_low_ratio": 0.6,  # qualified -> won below 60% of the CRM's qualification probability
    "leads_per_rep_month_high": 12.0,  # new deals a rep can really work per month
    # case 2 - good conversion, cycle too long (cycle threshold: traffic_lights.sales_cycle_days orange)
    "pushed_share_high": 0.30,  # share of open deals whose close date was pushed at least once
    # case 3 - optimistic forecast: calls over bookings (bias OR periods) AND commit deals unlikely,
    # or the calls alone when biased and above +10% in every one of the last `bias_periods` periods
    "forecast_bias_high": 0.15,  # median signed bias of the reps' commit calls (F/A - 1) over `bias_periods`
    "biased_periods_min": 3,  # at least this many of the last `bias_periods` periods above +10%
    "bias_periods": 4,
    "commit_probability_low": 0.30,  # amount-weighted calibrated P(won this quarter) of the reps' commit deals
    # judging against the company's own history
    "history_drop": 0.30,  # relative worsening vs the year before that counts as "low"/"long"
    "history_quarters": 8,  # closed quarters needed before own history is used
    "min_closed_deals": 60,  # fewer closed deals in the window -> insufficient data
    "min_history_months": 12,  # the conversion, lead and cycle measures look back one year
}

#: Qualification fields (BANT + MEDDIC); "known" means the value is not empty.
QUALIFICATION_FIELDS = (
    "budget",
    "decision_maker",
    "need",
    "timing",
    "metrics",
    "decision_criteria",
    "decision_process",
    "pain",
    "champion",
)


@dataclass(frozen=True)
class Playbook:
    """Company rules. Build with :meth:`from_yaml`, :meth:`from_dict` or the defaults.

    Attributes
    ----------
    stages : tuple of Stage
        Open stages in pipeline order; ``won`` and ``lost`` are implicit.
    mandatory_fields : dict
        Field name -> first stage from which it must be filled.
    age_actions : dict
        Ratio of age to cap (>=) -> action, e.g. ``{1.0: "follow_up", 2.0: "requalify", 3.0: "abandon"}``.
    wip_limit : int
        Maximum active deals (open, past ``to_contact``) per rep.
    commit_threshold, best_case_threshold, pipeline_threshold : float
        Calibrated probability of closing won in the period from which a deal is
        commit, best case, pipeline (below: omitted).
    traffic_lights : dict
        KPI name -> ``{"green": x, "orange": y, "higher_is_better": bool}``.
    cadence : tuple of CadenceStep
        Outreach cadence from first touch.
    fiscal_year_start_month : int
        1 = January. Fiscal years are named by the calendar year in which they end.
    currency : str
        Reporting currency (ISO code).
    qualification_fields : tuple of str
        BANT/MEDDIC fields used for the qualification-completeness score.
    """

    stages: tuple[Stage, ...] = _DEFAULT_STAGES
    mandatory_fields: Mapping[str, str] = field(
        default_factory=lambda: {
            "close_date": "qualification",
            "next_step_date": "qualification",
            "budget": "discovery",
            "decision_maker": "discovery",
        }
    )
    age_actions: Mapping[float, str] = field(
        default_factory=lambda: {1.0: "follow_up", 2.0: "requalify", 3.0: "abandon"}
    )
    wip_limit: int = 25
    commit_threshold: float = 0.70
    best_case_threshold: float = 0.40
    pipeline_threshold: float = 0.10
    traffic_lights: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: {
            "win_rate": {"green": 0.30, "orange": 0.20, "higher_is_better": True},
            "pipeline_coverage": {"green": 3.0, "orange": 2.0, "higher_is_better": True},
            "forecast_accuracy": {"green": 0.90, "orange": 0.80, "higher_is_better": True},
            "attainment": {"green": 1.0, "orange": 0.85, "higher_is_better": True},
            "sales_cycle_days": {"green": 90, "orange": 120, "higher_is_better": False},
            "data_completeness": {"green": 0.90, "orange": 0.75, "higher_is_better": True},
            "cadence_compliance": {"green": 0.85, "orange": 0.70, "higher_is_better": True},
            "ltv_cac": {"green": 3.0, "orange": 1.0, "higher_is_better": True},
            "nrr": {"green": 1.0, "orange": 0.90, "higher_is_better": True},
            "churn_rate": {"green": 0.02, "orange": 0.05, "higher_is_better": False},
            "next_step_coverage": {"green": 0.90, "orange": 0.75, "higher_is_better": True},
            "within_age_cap": {"green": 0.85, "orange": 0.70, "higher_is_better": True},
            "mandatory_fields_complete": {"green": 0.90, "orange": 0.75, "higher_is_better": True},
            "wip_load": {"green": 1.0, "orange": 1.2, "higher_is_better": False},
        "margin_rate": {"green": 0.35, "orange": 0.25, "higher_is_better": True},
        "basket_trend": {"green": 1.0, "orange": 0.9, "higher_is_better": True},
        "late_visits": {"green": 0, "orange": 3, "higher_is_better": False},
        "quotes_to_follow_up": {"green": 0, "orange": 3, "higher_is_better": False},
        "late_deliveries": {"green": 0, "orange": 3, "higher_is_better": False},
        "uninvoiced_deliveries": {"green": 0, "orange": 5, "higher_is_better": False},
        "overdue_actions": {"green": 0, "orange": 5, "higher_is_better": False},
        "wip_usage": {"green": 1.0, "orange": 1.2, "higher_is_better": False},
        "data_quality_index": {"green": 0.85, "orange": 0.70, "higher_is_better": True},
        "prospect_trend": {"green": 1.0, "orange": 0.8, "higher_is_better": True},
        "inactive_share": {"green": 0.05, "orange": 0.10, "higher_is_better": False},
        "lost_share": {"green": 0.05, "orange": 0.10, "higher_is_better": False},
        "visit_report_rate": {"green": 0.90, "orange": 0.70, "higher_is_better": True},
        "visit_to_order": {"green": 0.50, "orange": 0.25, "higher_is_better": True},
        "action_plan_progress": {"green": 0.85, "orange": 0.70, "higher_is_better": True},
        "qualified_lead_trend": {"green": 1.0, "orange": 0.8, "higher_is_better": True},
        }
    )
    diagnosis: Mapping[str, float] = field(default_factory=lambda: dict(_DEFAULT_DIAGNOSIS))
    cadence: tuple[CadenceStep, ...] = _DEFAULT_CADENCE
    fiscal_year_start_month: int = 1
    currency: str = "EUR"
    qualification_fields: tuple[str, ...] = QUALIFICATION_FIELDS

    def __post_init__(self) -> None:
        _validate(self)

    # ------------------------------------------------------------------ views
    @property
    def stage_names(self) -> tuple[str, ...]:
        """Open stage names in pipeline order."""
        return tuple(s.name for s in self.stages)

    @property
    def all_stage_names(self) -> tuple[str, ...]:
        """Open stages followed by ``won`` and ``lost``."""
        return self.stage_names + CLOSED_STAGES

    def stage_order(self, name: str) -> int:
        """Position of an open stage (0-based); won = len(stages), lost = -1."""
        if name == WON:
            return len(self.stages)
        if name == LOST:
            return -1
        try:
            return self.stage_names.index(name)
        except ValueError:
            raise PlaybookError(
                f"stage {name!r} is not in the playbook; known stages: {', '.join(self.all_stage_names)}"
            ) from None

    def stage(self, name: str) -> Stage:
        """The :class:`Stage` called ``name``."""
        return self.stages[self.stage_order(name)] if name not in CLOSED_STAGES else _closed(name)

    def crm_probability(self, name: str) -> float:
        """CRM default probability of a stage (won = 1, lost = 0)."""
        if name == WON:
            return 1.0
        if name == LOST:
            return 0.0
        return self.stage(name).crm_probability

    def age_action(self, age_days: float, stage: str) -> str | None:
        """The action for a deal ``age_days`` old in ``stage`` (None under the cap, and for closed deals)."""
        if stage in CLOSED_STAGES:
            return None
        cap = self.stage(stage).age_cap_days
        action = None
        for ratio in sorted(self.age_actions):
            if age_days > ratio * cap:
                action = self.age_actions[ratio]
        return action

    def traffic_light(self, kpi: str, value: float) -> str:
        """``"green"``, ``"orange"``, ``"red"`` (or ``"grey"`` for a missing value/KPI)."""
        rule = self.traffic_lights.get(kpi)
        if rule is None or value is None or value is pd.NA or value != value:
            return "grey"
        hib = bool(rule.get("higher_is_better", True))
        green, orange = float(rule["green"]), float(rule["orange"])
        if hib:
            return "green" if value >= green else "orange" if value >= orange else "red"
        return "green" if value <= green else "orange" if value <= orange else "red"

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "playbook") -> Playbook:
        """Defaults updated with ``data`` (the parsed YAML). Unknown keys are errors."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise PlaybookError(f"{source}: expected a mapping of keys to values, got {type(data).__name__}")
        base = cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PlaybookError(
                f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys: {', '.join(sorted(known))}"
            )
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "stages":
                kwargs["stages"] = _parse_stages(value, base.stages, source)
            elif key == "cadence":
                kwargs["cadence"] = _parse_cadence(value, source)
            elif key in ("mandatory_fields", "traffic_lights", "diagnosis"):
                if not isinstance(value, Mapping):
                    raise PlaybookError(f"{source}: '{key}' must be a mapping, got {value!r}")
                merged = dict(copy.deepcopy(getattr(base, key)))
                for k, v in value.items():
                    if key == "traffic_lights" and isinstance(v, Mapping) and isinstance(merged.get(k), Mapping):
                        merged[k] = {**merged[k], **v}  # a partial KPI rule updates the default one
                    else:
                        merged[k] = v
                kwargs[key] = merged
            elif key == "age_actions":
                if not isinstance(value, Mapping):
                    raise PlaybookError(
                        f"{source}: 'age_actions' must map a ratio (e.g. 1.0) to an action, got {value!r}"
                    )
                try:
                    kwargs[key] = {float(k): v for k, v in value.items()}
                except (TypeError, ValueError):
                    raise PlaybookError(
                        f"{source}: 'age_actions' keys must be numbers (ratio of age to cap), got {list(value)!r}"
                    ) from None
            elif key == "qualification_fields":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise PlaybookError(
                        f"{source}: 'qualification_fields' must be a list of field names, got {value!r}"
                    )
                kwargs[key] = tuple(value)
            elif key == "currency" and isinstance(value, str):
                kwargs[key] = value.strip().upper()
            else:
                kwargs[key] = value
        if "stages" in kwargs:
            # new stage names: default mandatory fields pointing at stages that no longer exist are dropped
            names = {s.name for s in kwargs["stages"]}
            kept = {f: st for f, st in base.mandatory_fields.items() if st in names}
            kwargs["mandatory_fields"] = {**kept, **dict(data.get("mandatory_fields") or {})}
        try:
            return replace(base, **kwargs)
        except PlaybookError as exc:
            raise PlaybookError(f"{source}: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> Playbook:
        """Read a playbook YAML file (keys not given keep their defaults)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PlaybookError(f"cannot read playbook file {path}: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PlaybookError(f"{path}: not valid YAML: {exc}") from None
        return cls.from_dict(data or {}, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (the YAML a user can start from)."""
        return {
            "stages": [s.__dict__.copy() for s in self.stages],
            "mandatory_fields": dict(self.mandatory_fields),
            "age_actions": dict(self.age_actions),
            "wip_limit": self.wip_limit,
            "commit_threshold": self.commit_threshold,
            "best_case_threshold": self.best_case_threshold,
            "pipeline_threshold": self.pipeline_threshold,
            "traffic_lights": {k: dict(v) for k, v in self.traffic_lights.items()},
            "diagnosis": dict(self.diagnosis),
            "cadence": [c.__dict__.copy() for c in self.cadence],
            "fiscal_year_start_month": self.fiscal_year_start_month,
            "currency": self.currency,
            "qualification_fields": list(self.qualification_fields),
        }

    def to_yaml(self, path: str | Path) -> None:
        """Write the playbook as YAML."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def _closed(name: str) -> Stage:
    return Stage(name, name.capitalize(), 1.0 if name == WON else 0.0, 0)


def _parse_stages(value: Any, defaults: tuple[Stage, ...], source: str) -> tuple[Stage, ...]:
    if not isinstance(value, list) or not value:
        raise PlaybookError(f"{source}: 'stages' must be a non-empty list of stages, got {value!r}")
    by_name = {s.name: s for s in defaults}
    items = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, Mapping) or "name" not in item:
            raise PlaybookError(f"{source}: stages[{i}] must be a mapping with a 'name', got {item!r}")
        allowed = {f.name for f in fields(Stage)}
        bad = sorted(set(item) - allowed)
        if bad:
            raise PlaybookError(f"{source}: stages[{i}] has unknown key(s) {bad}; allowed: {sorted(allowed)}")
        items.append(dict(item))
    names = [it["name"] for it in items]
    if all(n in by_name for n in names) and len(names) < len(defaults):
        # partial update of known stages, order kept
        upd = {it["name"]: it for it in items}
        return tuple(replace(s, **{k: v for k, v in upd.get(s.name, {}).items() if k != "name"}) for s in defaults)
    out = []
    for i, it in enumerate(items):
        base = by_name.get(it["name"])
        if base is None:
            missing = {"crm_probability", "age_cap_days"} - set(it)
            if missing:
                raise PlaybookError(f"{source}: new stage {it['name']!r} (stages[{i}]) needs {sorted(missing)}")
            out.append(
                Stage(
                    name=it["name"],
                    label=it.get("label", it["name"].replace("_", " ").capitalize()),
                    crm_probability=it["crm_probability"],
                    age_cap_days=it["age_cap_days"],
                    exit_criteria=it.get("exit_criteria", ""),
                )
            )
        else:
            out.append(replace(base, **{k: v for k, v in it.items() if k != "name"}))
    return tuple(out)


def _parse_cadence(value: Any, source: str) -> tuple[CadenceStep, ...]:
    if not isinstance(value, list):
        raise PlaybookError(f"{source}: 'cadence' must be a list of steps like {{name: d0_call, day: 0, type: call}}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping) or not {"name", "day", "type"} <= set(item):
            raise PlaybookError(f"{source}: cadence[{i}] needs 'name', 'day' and 'type', got {item!r}")
        out.append(CadenceStep(str(item["name"]), item["day"], str(item["type"]), str(item.get("label", ""))))
    return tuple(out)


def _validate(pb: Playbook) -> None:
    if not pb.stages:
        raise PlaybookError("'stages' must list at least one open stage")
    names = [s.name for s in pb.stages]
    if len(set(names)) != len(names):
        raise PlaybookError(f"'stages' has duplicated names: {names}")
    for s in pb.stages:
        if s.name in CLOSED_STAGES:
            raise PlaybookError(f"'stages' must list open stages only; {s.name!r} is implicit")
        if (
            not isinstance(s.crm_probability, (int, float))
            or isinstance(s.crm_probability, bool)
            or not 0 <= s.crm_probability <= 1
        ):
            raise PlaybookError(
                f"stage {s.name!r}: 'crm_probability' must be a number between 0 and 1, got {s.crm_probability!r}"
            )
        if not isinstance(s.age_cap_days, int) or isinstance(s.age_cap_days, bool) or s.age_cap_days <= 0:
            raise PlaybookError(
                f"stage {s.name!r}: 'age_cap_days' must be a positive whole number of days, got {s.age_cap_days!r}"
            )
    for fld, st in pb.mandatory_fields.items():
        if st not in names:
            raise PlaybookError(
                f"'mandatory_fields': field {fld!r} is required from stage {st!r}, which is not a stage; allowed: {', '.join(names)}"
            )
    for ratio, action in pb.age_actions.items():
        if action not in AGE_ACTIONS:
            raise PlaybookError(f"'age_actions': {action!r} is not an action; allowed: {', '.join(AGE_ACTIONS)}")
        if not ratio > 0:
            raise PlaybookError(f"'age_actions': ratio {ratio!r} must be > 0")
    if not isinstance(pb.wip_limit, int) or isinstance(pb.wip_limit, bool) or pb.wip_limit <= 0:
        raise PlaybookError(f"'wip_limit' must be a positive whole number, got {pb.wip_limit!r}")
    for key in ("commit_threshold", "best_case_threshold", "pipeline_threshold"):
        v = getattr(pb, key)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
            raise PlaybookError(f"'{key}' must be a probability between 0 and 1, got {v!r}")
    if not pb.commit_threshold >= pb.best_case_threshold >= pb.pipeline_threshold:
        raise PlaybookError(
            "thresholds must satisfy commit_threshold >= best_case_threshold >= pipeline_threshold, got "
            f"{pb.commit_threshold}, {pb.best_case_threshold}, {pb.pipeline_threshold}"
        )
    for kpi, rule in pb.traffic_lights.items():
        if not isinstance(rule, Mapping) or not {"green", "orange"} <= set(rule):
            raise PlaybookError(f"'traffic_lights.{kpi}' needs 'green' and 'orange' values, got {rule!r}")
        for level in ("green", "orange"):
            v = rule[level]
            if not isinstance(v, numbers.Real) or isinstance(v, bool):
                raise PlaybookError(f"'traffic_lights.{kpi}.{level}' must be a number, got {v!r}")
    for c in pb.cadence:
        if not isinstance(c.day, int) or isinstance(c.day, bool) or c.day < 0:
            raise PlaybookError(f"cadence step {c.name!r}: 'day' must be a whole number >= 0, got {c.day!r}")
        if c.type not in _CADENCE_TYPES:
            raise PlaybookError(
                f"cadence step {c.name!r}: 'type' must be one of {', '.join(_CADENCE_TYPES)}, got {c.type!r}"
            )
    for key, value in pb.diagnosis.items():
        if key not in _DEFAULT_DIAGNOSIS:
            raise PlaybookError(
                f"'diagnosis.{key}' is not a diagnosis threshold; allowed: {', '.join(_DEFAULT_DIAGNOSIS)}"
            )
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise PlaybookError(f"'diagnosis.{key}' must be a number >= 0, got {value!r}")
    m = pb.fiscal_year_start_month
    if not isinstance(m, int) or isinstance(m, bool) or not 1 <= m <= 12:
        raise PlaybookError(f"'fiscal_year_start_month' must be a month number 1-12, got {m!r}")
    if not isinstance(pb.currency, str) or not re.fullmatch(r"[A-Z]{3}", pb.currency):
        raise PlaybookError(f"'currency' must be a 3-letter ISO code such as EUR, got {pb.currency!r}")


DEFAULT_PLAYBOOK = Playbook()
