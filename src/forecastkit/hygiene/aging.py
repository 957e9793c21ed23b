"""Lead aging: open deals older than the age cap of their current stage.

The age of a deal in its stage comes from the shared timeline
(:func:`forecastkit.data.timeline.current_stage_age`): days from the entry into
the current stage to the snapshot date ``crm.as_of_date`` (never the clock).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.hygiene._deals import DEAL_COLUMNS, open_deal_frame, select
from forecastkit.playbook import Playbook

__all__ = ["aging"]

_COLUMNS = [
    *DEAL_COLUMNS,
    "probability",
    "entered_stage_at",
    "days_in_stage",
    "age_cap_days",
    "days_over_cap",
    "action",
]


def aging(
    crm: CRM,
    *,
    owner: str | Iterable[str] | None = None,
    team: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """Open deals whose age in their current stage exceeds the stage's cap.

    A deal is *aging* when ``days_in_stage > age_cap_days`` of its stage in
    ``crm.playbook``. The prescribed action is the playbook's
    :meth:`~forecastkit.playbook.Playbook.age_action`: with the default
    ``age_actions`` ``{1.0: follow_up, 2.0: requalify, 3.0: abandon}`` a deal
    over the cap is followed up, over twice the cap requalified, over three
    times the cap abandoned. Deals whose stage is unknown (possible after
    ``crm.as_of``) are left out.

    Parameters
    ----------
    crm : CRM
        The snapshot; ages are counted to ``crm.as_of_date``.
    owner, team : str or list of str, optional
        Keep only these owners / teams.

    Returns
    -------
    DataFrame
        One row per aging deal, most days over the cap first:
        ``opportunity_id, owner, team, account_id, name, stage, amount,
        probability, entered_stage_at, days_in_stage`` (float days),
        ``age_cap_days``, ``days_over_cap`` (``days_in_stage - age_cap_days``),
        ``action`` (``follow_up`` / ``requalify`` / ``abandon``, or empty when
        the playbook's smallest ratio is above 1).

    Examples
    --------
    >>> import forecastkit as fk
    >>> fk.hygiene.aging(crm)[["opportunity_id", "days_over_cap", "action"]]  # doctest: +SKIP
    """
    return select(_aging(open_deal_frame(crm), crm.playbook), owner, team).reset_index(drop=True)


def _aging(d: pd.DataFrame, pb: Playbook, keep_index: bool = False) -> pd.DataFrame:
    """The rows of :func:`aging`; ``keep_index``: indexed by their rows in ``d`` (else 0..n-1)."""
    caps = d["stage"].map({s.name: float(s.age_cap_days) for s in pb.stages}).astype("float64").to_numpy()
    days = d["days_in_stage"].to_numpy(dtype="float64")
    over = np.greater(days, caps, where=~np.isnan(caps), out=np.zeros(len(d), dtype=bool))
    out = d.loc[over, [*DEAL_COLUMNS, "probability", "entered_stage_at", "days_in_stage"]].copy()
    cap = caps[over]
    age = days[over]
    action = np.full(len(out), None, dtype=object)
    for ratio in sorted(pb.age_actions):  # same rule as Playbook.age_action: the largest ratio exceeded wins
        action = np.where(age > ratio * cap, pb.age_actions[ratio], action)
    out["age_cap_days"] = cap.astype("int64")
    out["days_over_cap"] = age - cap
    out["action"] = pd.array(action, dtype="string")
    out = out.sort_values("days_over_cap", ascending=False, kind="stable")  # ties keep the snapshot's order
    out = out[_COLUMNS]
    return out if keep_index else out.reset_index(drop=True)
