"""WIP limit: active deals per rep against ``playbook.wip_limit``, and what to close out first.

A limit on active deals per rep concentrates effort and reduces losses through
neglect (domain section 4). *Active* means open and past the first stage of
the playbook (``to_contact`` by default): leads still to contact do not count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.hygiene._deals import DEAL_COLUMNS, isin, open_deal_frame, select
from forecastkit.playbook import Playbook

__all__ = ["WipReport", "wip"]


@dataclass(frozen=True)
class WipReport:
    """Result of :func:`wip`.

    Attributes
    ----------
    by_owner : DataFrame
        One row per owner with active deals, most loaded first: ``owner, team,
        active_deals, wip_limit, over_limit`` (active deals beyond the limit,
        0 when within), ``load`` (active / limit), ``status`` (``over`` /
        ``at`` / ``under``).
    close_out : DataFrame
        The deals each over-limit owner should close out (win, requalify or
        abandon) first - ``over_limit`` of them, lowest probability first then
        oldest: ``opportunity_id, owner, team, account_id, name, stage, amount,
        probability, deal_age_days, days_in_stage, rank`` (1 = first to close).
    """

    by_owner: pd.DataFrame
    close_out: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """The per-owner table."""
        return self.by_owner

    def _repr_html_(self) -> str:
        return (
            "<p><b>Active deals per owner vs the WIP limit</b></p>"
            + self.by_owner.to_html(index=False)
            + f"<p><b>Deals to close out first</b> ({len(self.close_out)})</p>"
            + self.close_out.head(50).to_html(index=False)
        )


def wip(
    crm: CRM,
    *,
    owner: str | Iterable[str] | None = None,
    team: str | Iterable[str] | None = None,
) -> WipReport:
    """Active deals per rep against the playbook's WIP limit.

    Parameters
    ----------
    crm : CRM
        The snapshot (open deals as of ``crm.as_of_date``).
    owner, team : str or list of str, optional
        Keep only these owners / teams.

    Returns
    -------
    WipReport
        ``by_owner`` and ``close_out`` frames (columns listed in
        :class:`WipReport`). Ranking: lowest win probability first
        (see ``_deal_probability``), then the oldest deal (days since created).
    """
    d = select(open_deal_frame(crm), owner, team)
    by_owner, close_out = _wip(d, crm.playbook)
    return WipReport(by_owner, close_out)


def _wip(d: pd.DataFrame, pb: Playbook, keep_index: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``by_owner`` and ``close_out`` of :func:`wip`; ``keep_index``: close-out rows indexed by their rows in ``d``."""
    active = d[(d["stage_order"] >= 1).to_numpy()]
    limit = int(pb.wip_limit)
    g = active.groupby("owner", sort=True, observed=True)
    by_owner = pd.DataFrame({"team": g["team"].first(), "active_deals": g.size()}).reset_index()
    by_owner["active_deals"] = by_owner["active_deals"].astype("int64")
    by_owner["wip_limit"] = limit
    by_owner["over_limit"] = (by_owner["active_deals"] - limit).clip(lower=0).astype("int64")
    by_owner["load"] = by_owner["active_deals"] / limit
    by_owner["status"] = pd.array(
        np.select(
            [by_owner["active_deals"] > limit, by_owner["active_deals"] == limit], ["over", "at"], default="under"
        ),
        dtype="string",
    )
    by_owner = by_owner.sort_values(["load", "owner"], ascending=[False, True], kind="stable").reset_index(drop=True)

    over = by_owner.loc[by_owner["over_limit"] > 0, ["owner", "over_limit"]]
    cand = active[isin(active["owner"], over["owner"])]
    cand = cand.assign(_p=cand["probability"].fillna(-1.0))
    cand = cand.sort_values(
        ["owner", "_p", "deal_age_days", "opportunity_id"], ascending=[True, True, False, True], kind="stable"
    )
    cand["rank"] = cand.groupby("owner", sort=False).cumcount().to_numpy() + 1
    quota = cand["owner"].map(over.set_index("owner")["over_limit"]).to_numpy()
    cols = [*DEAL_COLUMNS, "probability", "deal_age_days", "days_in_stage", "rank"]
    close_out = cand.loc[cand["rank"].to_numpy() <= quota, cols]
    close_out = close_out.copy() if keep_index else close_out.reset_index(drop=True)
    close_out["rank"] = close_out["rank"].astype("int64")
    return by_owner, close_out
