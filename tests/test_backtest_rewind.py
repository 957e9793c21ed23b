"""The backtest's checkpoint snapshots (``_Rewinder.at``) hold exactly what the methods read.

Each checkpoint snapshot is compared with the plain rewind of the same lean copy
(``lean.as_of(d)``) and of the whole company (``crm.as_of(d)``): the same deals and
history, no field history (no method reads it), and the activities of the open deals
only, with their deals' rows held for the features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _probability_samples import sample

from forecastkit.forecast import backtest as B
from forecastkit.probability import features as F


def test_checkpoint_snapshots_hold_the_deals_history_and_open_deals_activities() -> None:
    crm, _ = sample("baseline", 0)
    rewind = B._Rewinder(crm, ["model", "stage"], None, crm.as_of_date - pd.Timedelta(days=400))
    assert rewind.by_position and rewind.act_pos is not None
    for k in (400, 200, 45, 0):
        d = crm.as_of_date - pd.Timedelta(days=k)
        snap, pos = rewind.at(d)
        assert pos is not None
        full, plain = crm.as_of(d), rewind.lean.as_of(d)
        o = snap.opportunities
        pd.testing.assert_frame_equal(o, full.opportunities[list(o.columns)], check_exact=True)
        pd.testing.assert_frame_equal(snap.history, full.history, check_exact=True)
        assert not snap.has("field_history") and plain.has("field_history")
        # the activities of the open deals, in the table's order, each with its deal's row
        open_ids = set(o.loc[(o["status"] == "open").to_numpy(dtype=bool), "opportunity_id"])
        a = plain.activities
        want = a[a["opportunity_id"].isin(open_ids).to_numpy(dtype=bool)].reset_index(drop=True)
        assert 0 < len(want) <= len(a) and (k > 200 or len(want) < len(a) // 2)
        pd.testing.assert_frame_equal(snap.activities, want, check_exact=True)
        rows = snap._cached_only(("deal_pos", "activities"))
        np.testing.assert_array_equal(o["opportunity_id"].to_numpy()[rows], want["opportunity_id"].to_numpy())
        pd.testing.assert_frame_equal(F.point_in_time_features(snap), F.point_in_time_features(plain), check_exact=True)
        np.testing.assert_array_equal(B._Context(snap, None, None, 4).is_open, (o["status"] == "open").to_numpy())
