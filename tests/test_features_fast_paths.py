"""The fast paths of the win model's inputs give the numbers of the plain pandas ones.

* activity features by row position (pyarrow look-up, or the deal rows a backtest rewind
  hands its snapshot) = the two groupbys over the activities table;
* the win model reading categorical features as codes of a sorted vocabulary = the same
  pipeline reading the texts (same design matrix, same probabilities).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _probability_samples import sample

from forecastkit.probability import features as F
from forecastkit.probability.features import _activity_features, _activity_features_by_groupby, _open_deal_columns


def test_activity_features_by_position_equal_the_groupbys() -> None:
    crm, _ = sample("baseline", 0)
    for k in (0, 400):
        snap = crm.as_of(crm.as_of_date - pd.Timedelta(days=k))
        o, rows = _open_deal_columns(snap, rows=True)
        want = _activity_features_by_groupby(snap, o["opportunity_id"])
        got = _activity_features(snap, o["opportunity_id"], rows)  # pyarrow look-up
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert want[0].sum() > 0 and np.isfinite(want[1]).any()  # real activity numbers compared
        # the deal rows a backtest rewind sets on its snapshot (CRM._rows_of_deals' cache)
        snap._rows_of_deals("activities", np.ones(len(snap.opportunities), dtype=bool))
        assert snap._cached_only(("deal_pos", "activities")) is not None
        got = _activity_features(snap, o["opportunity_id"], rows)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_activity_features_with_repeated_and_missing_ids() -> None:
    crm, _ = sample("baseline", 0)
    snap = crm.as_of(crm.as_of_date - pd.Timedelta(days=30))
    ids = snap.open_deals["opportunity_id"].iloc[:50]
    ids = pd.concat([ids, ids.iloc[:5], pd.Series([pd.NA], dtype=ids.dtype)], ignore_index=True)
    want = _activity_features_by_groupby(snap, ids)
    got = _activity_features(snap, ids)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_win_model_codes_give_the_probabilities_of_texts() -> None:
    from forecastkit.forecast.forecast import _win_dates
    from forecastkit.probability import model as M

    crm, _ = sample("baseline", 0)
    snap = crm.as_of(crm.as_of_date - pd.Timedelta(days=200))
    start, end = _win_dates(snap.as_of_date)
    names = list(F.FEATURES)
    rows = F.training_rows(snap, start, end, "30D")
    test = F.point_in_time_features(crm, names)
    y = rows["won"].to_numpy(int)
    X, vocab = M._coded(rows, names)
    assert set(vocab) == {n for n in names if F.FEATURES[n].kind == "categorical"}
    assert all(list(v) == sorted(v) for v in vocab.values())
    assert (X[list(vocab)] >= 0).all().all()
    unseen = sum(int((vocab[n].get_indexer(M._frame(test, [n])[n].to_numpy(dtype=object)) < 0).sum()) for n in vocab)
    for kind in ("logistic",):
        texts = M._make_pipeline(kind, names, 0).fit(M._frame(rows, names), y)
        codes = M._make_pipeline(kind, names, 0).fit(X, y)
        np.testing.assert_array_equal(
            codes.predict_proba(M._frame(test, names, vocab)), texts.predict_proba(M._frame(test, names))
        )
    # the model keeps its vocabulary and predicts the same way
    model = M.WinModel().fit_rows(rows)
    assert list(model.vocabulary_) == list(vocab)
    p = model.predict_rows(test)
    assert p.shape == (len(test),) and np.isfinite(p).all()
    assert unseen >= 0  # (texts unseen in training are unknown to the encoder either way)
