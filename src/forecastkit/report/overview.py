"""Data steps and figures of the ``overview`` report (and the ``explore`` tour).

Each data function takes a CRM snapshot (anything with ``.opportunities`` and
``.playbook``) or a bare opportunities frame (then the default playbook's
stages are used) and returns a new tidy frame; each ``plot_*`` function takes
that frame and returns a plotly Figure (never shown).
"""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd

from forecastkit.playbook import CLOSED_STAGES, DEFAULT_PLAYBOOK, Playbook

__all__ = [
    "open_pipeline",
    "pipeline_by_stage",
    "pipeline_by_owner",
    "pipeline_pivot",
    "monthly_flow",
    "compare_pipeline",
    "rejected_examples",
    "plot_pipeline_by_stage",
    "plot_pipeline_by_owner",
    "plot_monthly_flow",
    "plot_pipeline_comparison",
]


def _unpack(data: Any) -> tuple[pd.DataFrame, Playbook]:
    if isinstance(data, pd.DataFrame):
        return data, DEFAULT_PLAYBOOK
    return data.opportunities, getattr(data, "playbook", None) or DEFAULT_PLAYBOOK


def _stage_order(stages: pd.Series, playbook: Playbook) -> list[str]:
    """Playbook stages first (in order), then any unknown stage alphabetically."""
    known = list(playbook.stage_names)
    return known + sorted(set(stages.dropna().astype(str)) - set(known) - set(CLOSED_STAGES))


def open_pipeline(data: Any) -> pd.DataFrame:
    """The open deals (``status == "open"``, or a non-closed stage when status is empty).

    Returns
    -------
    pandas.DataFrame
        The open rows of the opportunities table, all columns kept.
    """
    opps, _ = _unpack(data)
    if "status" in opps.columns:
        status = opps["status"].astype("string")
        is_open = (status == "open").fillna(~opps["stage"].isin(CLOSED_STAGES))
    else:
        is_open = ~opps["stage"].isin(CLOSED_STAGES)
    return opps.loc[is_open.astype(bool)].copy()


def pipeline_by_stage(data: Any) -> pd.DataFrame:
    """Open pipeline per stage, in playbook order (stages with no deal included).

    Returns
    -------
    pandas.DataFrame
        ``stage``            stage name
        ``label``            display label from the playbook
        ``deals``            number of open deals
        ``amount``           total amount of open deals
        ``weighted_amount``  amount x the stage's CRM probability
    """
    opps, pb = _unpack(data)
    open_ = open_pipeline(opps)
    order = _stage_order(open_["stage"], pb)
    grouped = open_.groupby(open_["stage"].astype(str), observed=True)["amount"].agg(["size", "sum"])
    out = pd.DataFrame({"stage": order})
    out["label"] = [pb.stage(s).label if s in pb.stage_names else s for s in order]
    out["deals"] = out["stage"].map(grouped["size"]).fillna(0).astype("int64")
    out["amount"] = out["stage"].map(grouped["sum"]).fillna(0.0).astype("float64")
    prob = [pb.crm_probability(s) if s in pb.stage_names else float("nan") for s in order]
    out["weighted_amount"] = out["amount"] * pd.Series(prob, dtype="float64")
    return out


def pipeline_by_owner(data: Any) -> pd.DataFrame:
    """Open pipeline per owner and stage (long format, for a stacked bar).

    Returns
    -------
    pandas.DataFrame
        ``owner``, ``stage`` (playbook order), ``deals``, ``amount``; owners sorted
        by total amount, largest first; only owner/stage pairs with a deal.
    """
    opps, pb = _unpack(data)
    open_ = open_pipeline(opps)
    cols = ["owner", "stage", "deals", "amount"]
    if open_.empty:
        return pd.DataFrame(columns=cols)
    frame = open_.assign(owner=open_["owner"].astype(str), stage=open_["stage"].astype(str))
    out = frame.groupby(["owner", "stage"], observed=True)["amount"].agg(deals="size", amount="sum").reset_index()
    order = _stage_order(out["stage"], pb)
    totals = out.groupby("owner")["amount"].sum().sort_values(ascending=False, kind="stable")
    out["_o"] = out["owner"].map({o: i for i, o in enumerate(totals.index)})
    out["_s"] = out["stage"].map({s: i for i, s in enumerate(order)})
    out = out.sort_values(["_o", "_s"]).drop(columns=["_o", "_s"]).reset_index(drop=True)
    out["deals"] = out["deals"].astype("int64")
    out["amount"] = out["amount"].astype("float64")
    return out[cols]


def pipeline_pivot(data: Any, value: Literal["amount", "deals"] = "amount") -> pd.DataFrame:
    """Open pipeline as an owner x stage table with totals.

    Parameters
    ----------
    data : CRM or DataFrame
    value : {"amount", "deals"}
        What the cells hold.

    Returns
    -------
    pandas.DataFrame
        Index ``owner`` (plus a ``total`` row), one column per playbook stage in
        order, and a ``total`` column.
    """
    if value not in ("amount", "deals"):
        from forecastkit.errors import ParameterError

        raise ParameterError(f"value must be 'amount' or 'deals', got {value!r}")
    opps, pb = _unpack(data)
    long = pipeline_by_owner(data)
    order = _stage_order(long["stage"], pb) if not long.empty else list(pb.stage_names)
    wide = long.pivot_table(index="owner", columns="stage", values=value, aggfunc="sum", fill_value=0, observed=True)
    wide = wide.reindex(columns=order, fill_value=0)
    wide = wide.reindex(long["owner"].drop_duplicates().tolist())
    wide["total"] = wide.sum(axis=1)
    wide.loc["total"] = wide.sum(axis=0)
    wide.index.name = "owner"
    wide.columns.name = None
    return wide.astype("int64" if value == "deals" else "float64")


def monthly_flow(data: Any) -> pd.DataFrame:
    """Deals created and won per calendar month.

    Won deals are dated by ``closed_at`` (``close_date`` when empty). Months
    with no activity between the first and the last are included with zeros.

    Returns
    -------
    pandas.DataFrame
        ``month`` (first day, Timestamp), ``created_deals``, ``created_amount``,
        ``won_deals``, ``won_amount``.
    """
    opps, _ = _unpack(data)
    cols = ["month", "created_deals", "created_amount", "won_deals", "won_amount"]
    created = pd.to_datetime(opps["created_at"]).dt.to_period("M")
    won = opps["status"].astype("string").eq("won").fillna(False) if "status" in opps else opps["stage"].eq("won")
    won_mask = won.astype(bool).to_numpy()
    closed = pd.to_datetime(opps["closed_at"]) if "closed_at" in opps else pd.Series(pd.NaT, index=opps.index)
    won_at = closed.fillna(pd.to_datetime(opps["close_date"]))[won_mask].dt.to_period("M")
    amount = opps["amount"].astype("float64")
    c = amount.groupby(created).agg(["size", "sum"])
    w = amount[won_mask].groupby(won_at).agg(["size", "sum"])
    months = c.index.union(w.index).dropna()
    if len(months) == 0:
        return pd.DataFrame(columns=cols)
    full = pd.period_range(months.min(), months.max(), freq="M")
    c, w = c.reindex(full, fill_value=0), w.reindex(full, fill_value=0)
    return pd.DataFrame(
        {
            "month": full.to_timestamp(),
            "created_deals": c["size"].to_numpy().astype("int64"),
            "created_amount": c["sum"].to_numpy().astype("float64"),
            "won_deals": w["size"].to_numpy().astype("int64"),
            "won_amount": w["sum"].to_numpy().astype("float64"),
        },
        columns=cols,
    )


def compare_pipeline(before: Any, after: Any, labels: tuple[str, str] = ("before", "after")) -> pd.DataFrame:
    """Open pipeline per stage in two snapshots (e.g. ``crm.as_of(d)`` and ``crm``).

    Returns
    -------
    pandas.DataFrame
        ``stage``, ``label``, ``snapshot`` (one of ``labels``), ``deals``, ``amount``.
    """
    frames = []
    for name, snap in zip(labels, (before, after), strict=True):
        frames.append(pipeline_by_stage(snap).assign(snapshot=name)[["stage", "label", "snapshot", "deals", "amount"]])
    return pd.concat(frames, ignore_index=True)


def rejected_examples(rejected: pd.DataFrame, per_group: int = 3) -> pd.DataFrame:
    """A few rejected rows per table and reason (a load report's ``rejected`` frame).

    Returns
    -------
    pandas.DataFrame
        The same columns as ``rejected``, at most ``per_group`` rows per
        (table, reason), plus ``count``: how many rows share that table and reason.
    """
    if rejected is None or rejected.empty:
        cols = [*(rejected.columns if rejected is not None else ["table", "file", "row", "column", "value", "reason"])]
        return pd.DataFrame(columns=[*cols, "count"])
    keys = [k for k in ("table", "reason") if k in rejected.columns]
    counts = rejected.groupby(keys, sort=False)[keys[0]].transform("size")
    out = rejected.assign(count=counts.astype("int64"))
    return out.groupby(keys, sort=False).head(per_group).reset_index(drop=True)


# ------------------------------------------------------------------- figures
def plot_pipeline_by_stage(frame: pd.DataFrame, *, title: str = "Open pipeline by stage"):  # -> go.Figure
    """Funnel of open pipeline amount per stage (from :func:`pipeline_by_stage`)."""
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Funnel(
            y=frame["label"],
            x=frame["amount"],
            text=[f"{d} deals" for d in frame["deals"]],
            textinfo="value+text",
            name="open pipeline",
        )
    )
    fig.update_layout(title=title, margin={"l": 120})
    return fig


def plot_pipeline_by_owner(frame: pd.DataFrame, *, title: str = "Open pipeline by owner and stage"):
    """Stacked bars: amount per owner, stacked by stage (from :func:`pipeline_by_owner`)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    owners = frame["owner"].drop_duplicates().tolist()
    for stage, part in frame.groupby("stage", sort=False):
        part = part.set_index("owner").reindex(owners)
        fig.add_trace(go.Bar(x=owners, y=part["amount"].fillna(0), name=str(stage), customdata=part["deals"].fillna(0)))
    fig.update_layout(barmode="stack", title=title, xaxis_title="owner", yaxis_title="amount", legend_title="stage")
    return fig


def plot_monthly_flow(frame: pd.DataFrame, *, value: Literal["amount", "deals"] = "amount", title: str | None = None):
    """Grouped bars of deals created and won per month (from :func:`monthly_flow`)."""
    import plotly.graph_objects as go

    fig = go.Figure(
        [
            go.Bar(x=frame["month"], y=frame[f"created_{value}"], name="created"),
            go.Bar(x=frame["month"], y=frame[f"won_{value}"], name="won"),
        ]
    )
    fig.update_layout(
        barmode="group",
        title=title or f"Deals created and won per month ({value})",
        xaxis_title="month",
        yaxis_title=value,
    )
    return fig


def plot_pipeline_comparison(frame: pd.DataFrame, *, title: str = "Open pipeline by stage: then and now"):
    """Grouped bars of :func:`compare_pipeline`'s result."""
    import plotly.graph_objects as go

    fig = go.Figure(
        [
            go.Bar(x=part["label"], y=part["amount"], name=str(snap))
            for snap, part in frame.groupby("snapshot", sort=False)
        ]
    )
    fig.update_layout(barmode="group", title=title, xaxis_title="stage", yaxis_title="amount")
    return fig
