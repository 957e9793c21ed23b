"""Stage-exit features: values as of the moment each deal left the stage, and the leakage guard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from winloss_fixtures import day, small_crm

from forecastkit.errors import LeakageError, ParameterError
from forecastkit.winloss.features import FEATURES, check_features, stage_exit_features, stage_exits


def test_stage_exits_counting_rule_and_exit_times():
    ex = stage_exits(small_crm(), "qualification").set_index("opportunity_id")
    # D is still in qualification (no exit), E never reached it; C jumped past it on day 8
    assert list(ex.index) == ["A", "B", "C"]
    assert ex.loc["A", "exited_at"] == day(30) and ex.loc["A", "next_stage"] == "discovery"
    assert ex.loc["B", "exited_at"] == day(25) and ex.loc["B", "next_stage"] == "lost"
    assert ex.loc["C", "exited_at"] == day(8) and ex.loc["C", "days_in_stage"] == 0.0
    assert ex.loc["A", "days_in_stage"] == pytest.approx(20.0)
    assert ex.loc["B", "days_in_stage"] == pytest.approx(20.0)


def test_features_are_taken_before_the_exit_not_from_the_final_state():
    names = [
        "champion_known",
        "log2_amount",
        "activities",
        "calls",
        "meetings",
        "close_date_pushes",
        "days_in_stage",
        "deal_age_days",
        "competitor_present",
        "discount_band",
        "owner",
        "segment",
    ]
    f = stage_exit_features(small_crm(), "qualification", names).set_index("opportunity_id")
    # A's champion was named on day 12 (before leaving on day 30); B's only on day 26, after it was lost on day 25
    assert f.loc["A", "champion_known"] == 1.0
    assert f.loc["B", "champion_known"] == 0.0
    # A's amount went 10 000 -> 12 000 on day 35, after the exit
    assert f.loc["A", "log2_amount"] == pytest.approx(np.log2(10000.0))
    # calls on days 11 and 15 count, the meeting on day 40 does not, the undone email never does
    assert (f.loc["A", "activities"], f.loc["A", "calls"], f.loc["A", "meetings"]) == (2.0, 2.0, 0.0)
    assert f.loc["A", "close_date_pushes"] == 1.0  # pushed on day 20
    assert f.loc["A", "deal_age_days"] == pytest.approx(30.0)
    assert f.loc["C", "deal_age_days"] == pytest.approx(8.0)
    assert list(f["discount_band"]) == [">=15%", "none", "<15%"]
    assert list(f["competitor_present"]) == [1.0, 0.0, 1.0]
    assert list(f["segment"]) == ["smb", "smb", "enterprise"]


def test_fields_without_history_keep_their_current_value_and_to_contact_exit_excludes_later_fields():
    f = stage_exit_features(small_crm(), "to_contact", ["champion_known", "activities"]).set_index("opportunity_id")
    # A left to_contact on day 10; its champion came on day 12
    assert f.loc["A", "champion_known"] == 0.0
    assert f.loc["A", "activities"] == 0.0


@pytest.mark.parametrize("leak", ["loss_reason", "stage_changes", "days_to_close", "closed_at", "total_pushes"])
def test_leaking_column_raises_an_explanatory_error(leak):
    with pytest.raises(LeakageError, match=rf"'{leak}'.*only known once a deal closes.*remove them"):
        check_features(["segment", leak])


def test_leak_is_rejected_by_stage_exit_features_too():
    with pytest.raises(LeakageError, match="loss reason is typed in when the deal is lost"):
        stage_exit_features(small_crm(), "qualification", ["loss_reason"])


def test_unknown_feature_stage_and_presets():
    with pytest.raises(ParameterError, match="unknown feature"):
        check_features(["shoe_size"])
    with pytest.raises(ParameterError, match="not an open stage"):
        stage_exits(small_crm(), "won")
    assert "days_in_stage" in check_features("attributes+process")
    assert "days_in_stage" not in check_features(None)
    assert set(check_features("attributes+process")) <= set(FEATURES)


def test_does_not_mutate_inputs():
    crm = small_crm()
    before = crm.opportunities.copy()
    stage_exit_features(crm, "qualification", list(FEATURES))
    pd.testing.assert_frame_equal(crm.opportunities, before)
