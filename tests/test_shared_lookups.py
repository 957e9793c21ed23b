"""Per-snapshot sharing and the array helpers behind the loader, the hygiene review and the dashboards.

The numbers themselves are checked elsewhere (test_hygiene_*, test_kpi_dashboards,
test_validate); here: what is shared is computed once and never handed out for writing,
and the fast helpers give the same answers as the NumPy / pandas calls they replace.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from forecastkit.data.timeline import _all_distinct, _distinct_sorted
from forecastkit.data.validate import _objects, text_positions
from forecastkit.hygiene import contact_problems, review
from forecastkit.hygiene.completeness import _account_problems, _shared_contact_problems
from forecastkit.kpi.dashboards import dashboards


@pytest.mark.filterwarnings("ignore:customer_activity")  # one ordering customer: no BG/NBD fit (expected)
def test_contact_problems_are_computed_once_per_snapshot(crm):
    by_owner, by_account = _shared_contact_problems(crm)
    again = _shared_contact_problems(crm)
    assert again[0] is by_owner and again[1] is by_account
    assert _account_problems(crm) is by_account  # what hygiene.review reads
    review(crm)
    dashboards(crm, "data_health", level="rep")
    assert _shared_contact_problems(crm)[1] is by_account  # neither replaced nor recomputed


def test_contact_problems_hands_out_copies(crm):
    by_owner, by_account = contact_problems(crm)
    shared = _shared_contact_problems(crm)
    pd.testing.assert_frame_equal(by_owner, shared[0])
    pd.testing.assert_frame_equal(by_account, shared[1])
    assert by_owner is not shared[0] and by_account is not shared[1]
    assert by_account["account_id"].tolist() == ["A1", "A2"]  # both of bob's accounts miss department and phone
    by_account.loc[0, "contacts"] = -1  # a caller's edit stays in its copy
    assert contact_problems(crm)[1]["contacts"].tolist() == [1, 1]


def test_contact_problems_other_fields_are_kept_apart(crm):
    narrow = _shared_contact_problems(crm, ("email",))
    wide = _shared_contact_problems(crm)
    assert narrow[0] is not wide[0]
    assert narrow[0]["contacts"].sum() == wide[0]["contacts"].sum()  # same contacts, other fields judged


@pytest.mark.parametrize(
    "values",
    [
        np.array([5, 3, 5, 1, 3, 9], dtype=np.int64),
        np.array([], dtype=np.int64),
        np.array([7], dtype=np.int64),
        np.arange(10, 0, -1, dtype=np.int64),
        np.array([-1, -1, 0, 2**40, -(2**40)], dtype=np.int64),
    ],
)
def test_distinct_integers_match_numpy_unique(values):
    out = _distinct_sorted(values)
    np.testing.assert_array_equal(out, np.unique(values))
    assert out.dtype == values.dtype
    assert _all_distinct(values) == (len(np.unique(values)) == len(values))


def test_text_columns_reach_pyarrow_without_a_copy():
    s = pd.Series(["b", None, "a", "b"], dtype="string")
    data = _objects(s)
    assert data is s.array._ndarray  # the column's own array: no copy, no scan
    assert pa.array(data, type=pa.string(), from_pandas=True).to_pylist() == ["b", None, "a", "b"]
    keys = pd.Series(["a", "b"], dtype="string")
    assert text_positions(s, keys).tolist() == [1, -1, 0, 1]  # a missing value is never found
    # other columns are converted as before
    obj = pd.Series(["x", np.nan], dtype=object)
    assert _objects(obj).tolist()[0] == "x" and pd.isna(_objects(obj)[1])
    assert text_positions(pd.Index(["b", "z"]), keys).tolist() == [1, -1]
