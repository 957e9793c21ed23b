"""The playbook: defaults from the domain, YAML round trip, and one clear error per bad value."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from forecastkit.errors import ForecastkitError, PlaybookError
from forecastkit.playbook import AGE_ACTIONS, CLOSED_STAGES, DEFAULT_PLAYBOOK, Playbook


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "playbook.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- defaults
def test_default_stages_and_probabilities_match_the_domain() -> None:
    pb = Playbook()
    assert pb.stage_names == ("to_contact", "qualification", "discovery", "proposal", "negotiation")
    assert [s.crm_probability for s in pb.stages] == [0.05, 0.10, 0.25, 0.50, 0.75]
    assert pb.all_stage_names == pb.stage_names + ("won", "lost")
    assert pb.crm_probability("won") == 1.0
    assert pb.crm_probability("lost") == 0.0
    assert pb.crm_probability("proposal") == 0.50
    assert all(s.age_cap_days > 0 for s in pb.stages)


def test_default_cadence_matches_the_domain() -> None:
    pb = Playbook()
    assert [c.name for c in pb.cadence] == [
        "d0_call",
        "d0_email",
        "d2_social",
        "d5_reminder",
        "d9_case_study",
        "d14_call",
    ]
    assert [c.day for c in pb.cadence] == [0, 0, 2, 5, 9, 14]
    assert [c.type for c in pb.cadence] == ["call", "email", "social", "email", "email", "call"]


def test_default_other_settings() -> None:
    pb = Playbook()
    assert pb.fiscal_year_start_month == 1
    assert pb.currency == "EUR"
    assert pb.commit_threshold >= pb.best_case_threshold >= pb.pipeline_threshold
    assert set(pb.age_actions.values()) == set(AGE_ACTIONS)
    assert set(pb.mandatory_fields.values()) <= set(pb.stage_names)
    assert pb == DEFAULT_PLAYBOOK


def test_stage_order_and_lookup() -> None:
    pb = Playbook()
    assert pb.stage_order("to_contact") == 0
    assert pb.stage_order("negotiation") == 4
    assert pb.stage_order("won") == 5
    assert pb.stage_order("lost") == -1
    assert pb.stage("discovery").age_cap_days == 45
    assert pb.stage("won").crm_probability == 1.0


def test_unknown_stage_lookup_names_known_stages() -> None:
    with pytest.raises(PlaybookError, match=r"stage 'demo' is not in the playbook; known stages: to_contact, .*lost"):
        Playbook().stage_order("demo")
    assert issubclass(PlaybookError, ForecastkitError)


# ------------------------------------------------------------ yaml / dict
def test_yaml_round_trip(tmp_path: Path) -> None:
    pb = Playbook()
    pb.to_yaml(tmp_path / "pb.yaml")
    assert Playbook.from_yaml(tmp_path / "pb.yaml") == pb


def test_yaml_round_trip_of_a_customised_playbook(tmp_path: Path) -> None:
    pb = Playbook.from_dict(
        {
            "stages": [
                {"name": "lead", "crm_probability": 0.1, "age_cap_days": 10},
                {"name": "deal", "crm_probability": 0.6, "age_cap_days": 40, "label": "Deal"},
            ],
            "mandatory_fields": {"close_date": "deal"},
            "fiscal_year_start_month": 7,
            "currency": "USD",
            "wip_limit": 12,
        }
    )
    pb.to_yaml(tmp_path / "pb.yaml")
    again = Playbook.from_yaml(tmp_path / "pb.yaml")
    assert again == pb
    assert again.stage_names == ("lead", "deal")
    assert again.mandatory_fields == {"close_date": "deal"}


def test_empty_yaml_gives_defaults(tmp_path: Path) -> None:
    assert Playbook.from_yaml(_write(tmp_path, "")) == Playbook()
    assert Playbook.from_dict(None) == Playbook()  # type: ignore[arg-type]


def test_partial_stage_update_changes_one_age_cap(tmp_path: Path) -> None:
    pb = Playbook.from_yaml(_write(tmp_path, "stages:\n  - {name: discovery, age_cap_days: 60}\n"))
    assert pb.stage_names == Playbook().stage_names
    assert pb.stage("discovery").age_cap_days == 60
    assert pb.stage("discovery").crm_probability == 0.25
    assert pb.stage("proposal") == Playbook().stage("proposal")


def test_yaml_overrides_scalars(tmp_path: Path) -> None:
    pb = Playbook.from_yaml(_write(tmp_path, "fiscal_year_start_month: 2\nwip_limit: 20\ncurrency: usd\n"))
    assert (pb.fiscal_year_start_month, pb.wip_limit, pb.currency) == (2, 20, "USD")


def test_new_stages_drop_default_mandatory_fields_of_removed_stages() -> None:
    pb = Playbook.from_dict({"stages": [{"name": "lead", "crm_probability": 0.1, "age_cap_days": 10}]})
    assert pb.stage_names == ("lead",)
    assert pb.mandatory_fields == {}


def test_mandatory_fields_and_traffic_lights_merge_with_defaults() -> None:
    pb = Playbook.from_dict(
        {"mandatory_fields": {"next_step": "proposal"}, "traffic_lights": {"win_rate": {"green": 0.4}}}
    )
    assert pb.mandatory_fields["next_step"] == "proposal"
    assert pb.mandatory_fields["close_date"] == "qualification"
    assert pb.traffic_lights["win_rate"] == {"green": 0.4, "orange": 0.2, "higher_is_better": True}
    assert "nrr" in pb.traffic_lights


def test_age_actions_from_yaml_keys(tmp_path: Path) -> None:
    pb = Playbook.from_yaml(_write(tmp_path, "age_actions: {1: follow_up, 1.5: abandon}\n"))
    assert pb.age_actions == {1.0: "follow_up", 1.5: "abandon"}


# ------------------------------------------------------------- bad values
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("colour: blue\n", r"unknown key\(s\) 'colour'; allowed keys: .*wip_limit"),
        (
            "stages:\n  - {name: proposal, crm_probability: 1.5}\n",
            r"stage 'proposal': 'crm_probability' must be a number between 0 and 1, got 1.5",
        ),
        (
            "stages:\n  - {name: proposal, crm_probability: yes}\n",
            r"'crm_probability' must be a number between 0 and 1, got True",
        ),
        (
            "stages:\n  - {name: discovery, age_cap_days: -3}\n",
            r"stage 'discovery': 'age_cap_days' must be a positive whole number of days, got -3",
        ),
        (
            "stages:\n  - {name: discovery, age_cap_days: ten}\n",
            r"stage 'discovery': 'age_cap_days' must be a positive whole number of days, got 'ten'",
        ),
        (
            "stages:\n  - {name: discovery, colour: red}\n",
            r"stages\[0\] has unknown key\(s\) \['colour'\]; allowed: .*age_cap_days",
        ),
        ("stages:\n  - {label: Lead}\n", r"stages\[0\] must be a mapping with a 'name'"),
        ("stages: []\n", r"'stages' must be a non-empty list of stages"),
        (
            "stages:\n  - {name: lead}\n",
            r"new stage 'lead' \(stages\[0\]\) needs \['age_cap_days', 'crm_probability'\]",
        ),
        ("stages:\n  - {name: won, crm_probability: 1, age_cap_days: 1}\n", r"open stages only; 'won' is implicit"),
        (
            "mandatory_fields: {budget: closing}\n",
            r"'mandatory_fields': field 'budget' is required from stage 'closing', which is not a stage; allowed: to_contact",
        ),
        ("mandatory_fields: [budget]\n", r"'mandatory_fields' must be a mapping"),
        (
            "age_actions: {1.0: panic}\n",
            r"'age_actions': 'panic' is not an action; allowed: follow_up, requalify, abandon",
        ),
        ("age_actions: {soon: abandon}\n", r"'age_actions' keys must be numbers"),
        ("age_actions: {-1: abandon}\n", r"'age_actions': ratio -1.0 must be > 0"),
        ("wip_limit: 0\n", r"'wip_limit' must be a positive whole number, got 0"),
        ("wip_limit: 2.5\n", r"'wip_limit' must be a positive whole number, got 2.5"),
        (
            "commit_threshold: 0.3\nbest_case_threshold: 0.5\n",
            r"thresholds must satisfy commit_threshold >= best_case_threshold >= pipeline_threshold, got 0.3, 0.5, 0.1",
        ),
        ("pipeline_threshold: 2\n", r"'pipeline_threshold' must be a probability between 0 and 1, got 2"),
        (
            "cadence:\n  - {name: d0_fax, day: 0, type: fax}\n",
            r"cadence step 'd0_fax': 'type' must be one of call, email, social, visit, meeting, got 'fax'",
        ),
        (
            "cadence:\n  - {name: d0_call, day: -1, type: call}\n",
            r"cadence step 'd0_call': 'day' must be a whole number >= 0",
        ),
        ("cadence:\n  - {name: d0_call, type: call}\n", r"cadence\[0\] needs 'name', 'day' and 'type'"),
        ("cadence: d0_call\n", r"'cadence' must be a list of steps"),
        ("fiscal_year_start_month: 13\n", r"'fiscal_year_start_month' must be a month number 1-12, got 13"),
        ("fiscal_year_start_month: 0\n", r"'fiscal_year_start_month' must be a month number 1-12, got 0"),
        ("currency: EURO\n", r"'currency' must be a 3-letter ISO code such as EUR, got 'EURO'"),
        ("currency: 12\n", r"'currency' must be a 3-letter ISO code such as EUR, got 12"),
        (
            "traffic_lights: {win_rate: {green: high, orange: 0.2}}\n",
            r"'traffic_lights.win_rate.green' must be a number",
        ),
        ("traffic_lights: {speed: {green: 1}}\n", r"'traffic_lights.speed' needs 'green' and 'orange' values"),
        ("qualification_fields: budget\n", r"'qualification_fields' must be a list of field names"),
        ("- just\n- a list\n", r"expected a mapping of keys to values, got list"),
    ],
)
def test_bad_yaml_value_raises_playbook_error_naming_key(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(PlaybookError, match=match) as info:
        Playbook.from_yaml(path)
    assert str(path) in str(info.value)  # the message names the file


def test_invalid_yaml_text(tmp_path: Path) -> None:
    path = _write(tmp_path, "stages: [unclosed\n")
    with pytest.raises(PlaybookError, match=r"playbook.yaml: not valid YAML"):
        Playbook.from_yaml(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match=r"cannot read playbook file .*nope.yaml: No such file"):
        Playbook.from_yaml(tmp_path / "nope.yaml")


def test_direct_construction_is_validated() -> None:
    with pytest.raises(PlaybookError, match=r"'wip_limit' must be a positive whole number, got True"):
        Playbook(wip_limit=True)  # type: ignore[arg-type]
    with pytest.raises(PlaybookError, match=r"'stages' has duplicated names"):
        Playbook(stages=Playbook().stages[:2] * 2)


def test_to_dict_is_plain_yaml() -> None:
    data = Playbook().to_dict()
    assert yaml.safe_load(yaml.safe_dump(data)) == data


# ----------------------------------------------------------- traffic lights
@pytest.mark.parametrize(
    ("kpi", "value", "light"),
    [
        ("win_rate", 0.35, "green"),
        ("win_rate", 0.30, "green"),  # at the threshold
        ("win_rate", 0.25, "orange"),
        ("win_rate", 0.20, "orange"),
        ("win_rate", 0.10, "red"),
        ("sales_cycle_days", 60, "green"),  # lower is better
        ("sales_cycle_days", 90, "green"),
        ("sales_cycle_days", 100, "orange"),
        ("sales_cycle_days", 150, "red"),
        ("win_rate", None, "grey"),
        ("win_rate", float("nan"), "grey"),
        ("win_rate", pd.NA, "grey"),
        ("no_such_kpi", 1.0, "grey"),
    ],
)
def test_traffic_light(kpi: str, value: float, light: str) -> None:
    assert Playbook().traffic_light(kpi, value) == light


# --------------------------------------------------------------- age action
@pytest.mark.parametrize(
    ("age", "action"),
    [
        (0, None),
        (45, None),
        (46, "follow_up"),
        (90, "follow_up"),
        (91, "requalify"),
        (135, "requalify"),
        (136, "abandon"),
    ],
)
def test_age_action_discovery(age: float, action: str | None) -> None:
    # discovery cap is 45 days; "older than the cap" is strictly greater
    assert Playbook().age_action(age, "discovery") == action


def test_age_action_closed_stage_is_none() -> None:
    for stage in CLOSED_STAGES:
        assert Playbook().age_action(1000, stage) is None


def test_age_action_custom_ratios() -> None:
    pb = Playbook.from_dict({"age_actions": {0.5: "follow_up", 1.0: "abandon"}})
    assert pb.age_action(10, "to_contact") == "follow_up"  # cap 14
    assert pb.age_action(15, "to_contact") == "abandon"


def test_age_action_unknown_stage() -> None:
    with pytest.raises(PlaybookError, match="stage 'demo' is not in the playbook"):
        Playbook().age_action(3, "demo")
