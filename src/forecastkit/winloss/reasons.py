"""Why deals are lost: a Pareto of loss reasons by segment, competitor, product and stage lost at.

Loss reasons are normalised (lower case, spaces and hyphens to ``_``); an empty one is
``"(not given)"``. Each lost deal is also put in one of three kinds:

* ``no_decision`` - the buyer did not decide (reason ``no_decision``, ``no decision``,
  ``status quo``...): a qualification problem more than a competitive one;
* ``abandoned`` - the deal died of neglect: the reason says so (``abandoned``,
  ``neglected``, ``went dark``...), or no reason is given and no activity was done on
  it in the :data:`ABANDON_DAYS` days before it was closed lost;
* ``lost`` - every other loss (price, competitor, timing, product fit...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.data.timeline import stage_spells
from forecastkit.errors import ParameterError
from forecastkit.playbook import LOST
from forecastkit.winloss.drivers import Window, select_window

__all__ = ["loss_reasons", "LossReasons", "NO_DECISION", "ABANDONED", "ABANDON_DAYS", "PARETO_SHARE"]

#: Normalised reasons meaning the buyer made no decision.
NO_DECISION = frozenset({"no_decision", "nodecision", "no_decision_made", "status_quo", "do_nothing"})
#: Normalised reasons meaning the deal was abandoned.
ABANDONED = frozenset({"abandoned", "neglected", "went_dark", "no_response", "ghosted", "unresponsive"})
#: A lost deal without a reason and without activity in this many days before closing counts as abandoned.
ABANDON_DAYS = 30
#: Reasons up to this cumulative share of the lost deals are the "vital few".
PARETO_SHARE = 0.80
_NOT_GIVEN = "(not given)"
_NONE = "(none)"

By = Literal["segment", "competitor", "product", "stage", "source", "owner", "team"]


@dataclass(frozen=True)
class LossReasons:
    """Result of :func:`loss_reasons`.

    Attributes
    ----------
    pareto : DataFrame
        ``<by>..., loss_reason, lost_deals, share`` (of the group's lost deals),
        ``cumulative_share, lost_amount, amount_share`` (of the group's lost amount; 0 when
        its lost deals carry no amount), ``vital_few`` (the reasons that
        together make up the first :data:`PARETO_SHARE` of the group's losses, the one
        crossing the line included); reasons sorted by count within each group.
    kinds : DataFrame
        ``<by>..., lost_deals, no_decision, abandoned, lost, no_decision_share,
        abandoned_share``.
    deals : DataFrame
        One row per lost deal: ``opportunity_id, owner, segment, product, source,
        competitor, stage`` (the open stage it was lost at), ``closed_at, amount,
        loss_reason, kind``.
    """

    pareto: pd.DataFrame
    kinds: pd.DataFrame
    deals: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """The Pareto table."""
        return self.pareto

    def _repr_html_(self) -> str:
        return self.pareto.to_html(index=False, float_format="%.3g") + self.kinds.to_html(
            index=False, float_format="%.3g"
        )


def loss_reasons(crm: CRM, by: By | Sequence[By] | None = None, window: Window = None) -> LossReasons:
    """Pareto of loss reasons, overall or per segment, competitor, product or stage lost at.

    Parameters
    ----------
    crm : CRM
    by : str or list of str, optional
        ``segment``, ``competitor`` (the competitor named, ``"(none)"`` when empty),
        ``product``, ``stage`` (the open stage the deal was lost at), ``source``,
        ``owner`` or ``team``.
    window : optional
        Lost deals by ``closed_at``: ``None`` (all), a period (``"2026-Q3"``), a
        look-back (``"365D"``) or a ``(start, end)`` pair (see
        :func:`forecastkit.winloss.drivers.drivers`).

    Returns
    -------
    LossReasons
        ``pareto``, ``kinds`` and ``deals`` (columns listed in :class:`LossReasons`).
    """
    b = _by(by)
    d = _lost_deals(crm, window)
    pareto = _pareto(d, b)
    kinds = _kinds(d, b)
    return LossReasons(pareto, kinds, d)


def _by(by: object) -> list[str]:
    allowed = ("segment", "competitor", "product", "stage", "source", "owner", "team")
    cols = [] if by is None else [by] if isinstance(by, str) else list(by)  # type: ignore[arg-type]
    bad = [c for c in cols if c not in allowed]
    if bad:
        raise ParameterError(f"by={by!r}: cannot group loss reasons on {bad}; use any of {', '.join(allowed)}")
    return cols


def normalise_reason(s: pd.Series) -> pd.Series:
    """Lower case, trimmed, spaces and hyphens as ``_``; empty -> ``"(not given)"``."""
    t = s.astype("string").str.strip().str.lower().str.replace(r"[\s\-]+", "_", regex=True)
    return t.mask(t == "").fillna(_NOT_GIVEN).astype(object)


def _lost_deals(crm: CRM, window: Window) -> pd.DataFrame:
    o = crm.opportunities
    o = o[o["status"] == LOST]
    when = o["closed_at"].fillna(o["close_date"])
    o = o[select_window(when, window, crm).to_numpy()]
    when = when.loc[o.index]
    sp = stage_spells(crm)
    sp = sp[sp["opportunity_id"].isin(o["opportunity_id"]) & (sp["stage"] != LOST)]
    last_stage = sp.groupby("opportunity_id", sort=False)["stage"].last()
    reason = normalise_reason(o["loss_reason"])
    kind = np.where(reason.isin(NO_DECISION), "no_decision", np.where(reason.isin(ABANDONED), "abandoned", "lost"))
    silent = _silent(crm, o["opportunity_id"], when) & (reason == _NOT_GIVEN).to_numpy()
    kind = np.where(silent, "abandoned", kind)
    stage = last_stage.reindex(o["opportunity_id"].to_numpy()).astype(object).fillna(_NONE).to_numpy()
    order = [*crm.playbook.stage_names, *sorted(set(stage) - set(crm.playbook.stage_names))]
    out = pd.DataFrame(
        {
            "opportunity_id": o["opportunity_id"].to_numpy(),
            "owner": o["owner"].astype(object).to_numpy(),
            "team": o["team"].astype(object).fillna(_NONE).to_numpy(),
            "segment": o["segment"].astype(object).fillna(_NONE).to_numpy(),
            "product": o["product"].astype(object).fillna(_NONE).to_numpy(),
            "source": o["source"].astype(object).fillna(_NONE).to_numpy(),
            "competitor": o["competitor"].astype(object).fillna(_NONE).to_numpy(),
            "stage": pd.Categorical(stage, categories=order, ordered=True),
            "closed_at": when.to_numpy(),
            "amount": o["amount"].to_numpy(float),
            "loss_reason": reason.to_numpy(),
            "kind": kind,
        }
    )
    return out.reset_index(drop=True)


def _silent(crm: CRM, ids: pd.Series, when: pd.Series) -> np.ndarray:
    """True where no activity was done on the deal in the ABANDON_DAYS days before it closed (needs activities)."""
    if not crm.has("activities"):
        return np.zeros(len(ids), dtype=bool)
    a = crm.activities
    a = a[a["done_at"].notna() & a["opportunity_id"].isin(ids)]
    last = a.groupby("opportunity_id")["done_at"].max().reindex(ids.to_numpy())
    end = when.to_numpy() + np.timedelta64(1, "D")
    recent = last.to_numpy() >= end - np.timedelta64(ABANDON_DAYS + 1, "D")
    return ~np.asarray(recent, dtype=bool)


def _pareto(d: pd.DataFrame, b: list[str]) -> pd.DataFrame:
    cols = [*b, "loss_reason", "lost_deals", "share", "cumulative_share", "lost_amount", "amount_share", "vital_few"]
    if d.empty:
        return pd.DataFrame(columns=cols)
    g = (
        d.groupby([*b, "loss_reason"], sort=False, observed=True)
        .agg(lost_deals=("opportunity_id", "size"), lost_amount=("amount", "sum"))
        .reset_index()
    )
    g = g.sort_values([*b, "lost_deals", "loss_reason"], ascending=[True] * len(b) + [False, True], kind="stable")
    grp = g.groupby(b, sort=False, observed=True) if b else None
    tot_n = grp["lost_deals"].transform("sum") if grp is not None else g["lost_deals"].sum()
    tot_a = grp["lost_amount"].transform("sum") if grp is not None else g["lost_amount"].sum()
    g["share"] = g["lost_deals"] / tot_n
    g["cumulative_share"] = grp["share"].cumsum() if grp is not None else g["share"].cumsum()
    tot_a = np.broadcast_to(np.asarray(tot_a, dtype=float), (len(g),))  # (0: the lost deals carry no amount)
    g["amount_share"] = np.divide(g["lost_amount"].to_numpy(float), tot_a, out=np.zeros(len(g)), where=tot_a > 0)
    before = g["cumulative_share"] - g["share"]
    g["vital_few"] = before < PARETO_SHARE - 1e-12
    return g[cols].reset_index(drop=True)


def _kinds(d: pd.DataFrame, b: list[str]) -> pd.DataFrame:
    cols = [*b, "lost_deals", "no_decision", "abandoned", "lost", "no_decision_share", "abandoned_share"]
    if d.empty:
        return pd.DataFrame(columns=cols)
    k = pd.crosstab([d[c] for c in b], d["kind"]) if b else d["kind"].value_counts().to_frame().T
    k = k.reindex(columns=["no_decision", "abandoned", "lost"], fill_value=0)
    k.insert(0, "lost_deals", k.sum(axis=1))
    k["no_decision_share"] = k["no_decision"] / k["lost_deals"]
    k["abandoned_share"] = k["abandoned"] / k["lost_deals"]
    k = k.reset_index() if b else k.reset_index(drop=True)
    k.columns.name = None
    return k[cols]
