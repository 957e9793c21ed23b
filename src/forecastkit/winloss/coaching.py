"""Where does this rep lose deals compared with peers? Rep vs team, team vs company.

:func:`coaching` puts one rep beside their peers (the rest of their team by default)
and the team beside the rest of the company:

* **conversion at each stage transition** (reached stage k -> reached k+1; for the
  last open stage, -> won), counted by :func:`forecastkit.kpi.sales.conversion`
  (deals still undecided in a stage are left out). The gap is tested two ways:
  a two-proportion z-test (Fisher's exact test when an expected count is below 5)
  and a Beta-Binomial comparison - each rate gets a Jeffreys ``Beta(1/2, 1/2)``
  prior, and 20,000 seeded posterior draws give ``prob_worse`` = P(rep's true rate <
  peers') and a 90% credible interval of the gap;
* a transition is **flagged** when ``prob_worse >= 1 - 0.05 / k``, ``k`` the number of
  transitions compared (both sides have decided deals): looking for the worst of ``k``
  transitions at 95% each would flag one in four or five reps who convert exactly like
  their peers (measured on the sample company: a third of the reps who are not the
  generator's weak rep had a flag), the Bonferroni level keeps that chance under 5%;
* the **headline** is the flagged transition with the largest *credible* gap: the largest
  ``shortfall_low`` (the gap the rep falls short by with 95% posterior probability); it
  comes with the matching playbook action (:data:`STAGE_ACTIONS`, from the domain's case
  patterns and FAQ);
* **KPIs** beside the team and the company: win rate, average deal size, cycle
  (closed-only median and Kaplan-Meier median), velocity, activity mix, cadence
  compliance, hygiene score and forecast bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from forecastkit.data.crm import CRM
from forecastkit.data.schema import ACTIVITY_TYPES
from forecastkit.errors import ParameterError
from forecastkit.periods import parse_period

__all__ = ["coaching", "CoachingReport", "STAGE_ACTIONS", "transition_gaps"]

_DRAWS = 20_000
_CREDIBLE = 0.95
_FAMILY_ALPHA = 0.05  # chance of flagging any transition of a rep who converts like the peers (Bonferroni)

#: Playbook action per stage where deals are lost (the transition out of that stage), from the domain's three
#: case patterns and FAQ. Companies with other stage names get the generic action.
STAGE_ACTIONS: dict[str, str] = {
    "to_contact": (
        "Keep the outreach cadence (D0 call + value email, D2 social touch, D5 reminder, D9 case study, D14 call) "
        "and leave every touch with a dated next step."
    ),
    "qualification": (
        "Qualify harder: document budget, authority, need and timing (BANT), enforce MEDDIC on strategic accounts, "
        "tighten the ideal customer profile and kill unqualified opportunities fast (case 1)."
    ),
    "discovery": (
        "Reach the economic buyer early, map the decision criteria and process, and agree a mutual evaluation plan "
        "with the customer; have proof kits ready (case 2, FAQ 'shorten the cycle')."
    ),
    "proposal": (
        "Strengthen proof with sector case studies and reference calls, review the proposal with the economic "
        "buyer, and scope packaged offers with standard options to avoid back-and-forth (cases 1 and 2)."
    ),
    "negotiation": (
        "Involve legal early, book the signature date, use packaged offers with standard options, and have the "
        "deal peer-reviewed before it goes to commit (cases 2 and 3)."
    ),
}
_GENERIC_ACTION = (
    "Review the stage's exit criteria with the rep on their recent lost deals, with a peer review of the open ones."
)


@dataclass(frozen=True)
class CoachingReport:
    """Result of :func:`coaching`.

    Attributes
    ----------
    owner, team : str
    transitions : DataFrame
        Rep vs peers per stage transition: ``stage, next_stage, rep_decided, rep_advanced,
        rep_rate, peer_decided, peer_advanced, peer_rate, gap`` (rep - peers),
        ``gap_low, gap_high`` (90% credible interval), ``prob_worse``, ``shortfall_low``
        (gap the rep falls short by with 95% probability; 0 when none), ``p_value``,
        ``test`` (``z`` or ``fisher``), ``deals_lost_vs_peers`` (``-gap x rep_decided``),
        ``flagged`` (``prob_worse >= 1 - 0.05 / k`` over the ``k`` transitions compared),
        ``headline`` (the chosen transition), ``action``.
    team_transitions : DataFrame
        The same columns for the team (all its reps) against the rest of the company.
    kpis : DataFrame
        ``kpi, rep, peers, company, gap`` (rep - peers), ``p_value`` (where a count test
        applies), ``unit, note``.
    headline : str
        Where the rep loses deals compared with peers, and the playbook action.
    weak_stage : str or None
        The stage of the headline transition (None when no gap is credible).
    action : str
        The matching playbook action (empty when no gap is credible).
    """

    owner: str
    team: str
    transitions: pd.DataFrame
    team_transitions: pd.DataFrame
    kpis: pd.DataFrame
    headline: str
    weak_stage: str | None
    action: str

    def to_frame(self) -> pd.DataFrame:
        """The rep-vs-peers transition table."""
        return self.transitions

    def _repr_html_(self) -> str:
        return (
            f"<p><b>Coaching: {self.owner} ({self.team})</b><br>{self.headline}</p>"
            + self.transitions.to_html(index=False, float_format="%.3g")
            + self.kpis.to_html(index=False, float_format="%.3g")
        )


def coaching(
    crm: CRM,
    owner: str,
    *,
    period: str | None = None,
    peers: Literal["team", "company"] = "team",
    seed: int = 0,
) -> CoachingReport:
    """The rep against peers and the team against the company, with where the rep loses deals.

    Parameters
    ----------
    crm : CRM
        The snapshot.
    owner : str
        The rep (as in the ``owner`` column).
    period : str, optional
        A fiscal period (``"2026"``, ``"2025-H2"``...) or ``None`` (all history). Conversion
        counts deals *created* in it (cohorts); win rate, deal size, velocity and forecast
        bias count deals *closed* in it.
    peers : {"team", "company"}
        Compare with the rest of the rep's team (default) or the rest of the company.
    seed : int
        Seed of the posterior draws.

    Returns
    -------
    CoachingReport

    Raises
    ------
    ParameterError
        Unknown owner, or ``peers`` not ``team`` / ``company``.
    """
    from forecastkit.kpi.sales import conversion

    if peers not in ("team", "company"):
        raise ParameterError(f"peers={peers!r}: use 'team' (rest of the rep's team) or 'company' (everyone else)")
    conv = conversion(crm, period, by=["team", "owner"])
    owners = conv["owner"].dropna().unique()
    if owner not in set(owners):
        import difflib

        close = difflib.get_close_matches(str(owner), [str(o) for o in owners], n=5, cutoff=0.6)
        raise ParameterError(
            f"owner {owner!r} has no deals in this CRM snapshot{'' if period is None else f' for period {period}'}"
            f"; {'did you mean ' + ', '.join(close) + '?' if close else 'check the spelling of the owner column'}"
        )
    is_rep = conv["owner"] == owner
    teams = conv.loc[is_rep, "team"].mode()
    if len(teams):
        team = str(teams.iloc[0])
        in_team = conv["team"] == team
    else:  # the rep's deals carry no team: the "team" is the reps without one
        team = ""
        in_team = conv["team"].isna()
    peer_mask = (in_team & ~is_rep) if peers == "team" else ~is_rep
    rng = np.random.default_rng(seed)
    tr = transition_gaps(conv[is_rep], conv[peer_mask], crm, rng)
    team_tr = transition_gaps(conv[in_team], conv[~in_team], crm, rng)
    flagged = tr[tr["flagged"]]
    if len(flagged):
        best = flagged.sort_values("shortfall_low", ascending=False, kind="stable").iloc[0]
        tr["headline"] = tr["stage"] == best["stage"]
        weak = str(best["stage"])
        action = str(best["action"])
        headline = (
            f"{owner} loses deals at {best['stage']} -> {best['next_stage']}: {best['rep_rate']:.0%} move on against "
            f"{best['peer_rate']:.0%} for {'the rest of the team' if peers == 'team' else 'the rest of the company'} "
            f"(P(worse) = {best['prob_worse']:.0%}; about {best['deals_lost_vs_peers']:.0f} more deals lost than at "
            f"the peers' rate). Playbook: {action}"
        )
    else:
        tr["headline"] = False
        weak, action = None, ""
        k = int(tr["prob_worse"].notna().sum())
        headline = (
            f"{owner} converts no stage credibly worse than the peers (P(worse) < "
            f"{1 - _FAMILY_ALPHA / max(k, 1):.1%} at each of the {k} transitions compared)."
        )
    kpis = _kpis(crm, owner, team, period, peers)
    return CoachingReport(owner, team, tr, team_tr, kpis, headline, weak, action)


def transition_gaps(rep: pd.DataFrame, peers: pd.DataFrame, crm: CRM, rng: np.random.Generator) -> pd.DataFrame:
    """Compare the stage conversions of two groups of :func:`~forecastkit.kpi.sales.conversion` rows.

    Returns
    -------
    DataFrame
        The transition columns of :class:`CoachingReport` (without ``headline``).
    """
    names = list(crm.playbook.stage_names)

    def _sum(df: pd.DataFrame) -> pd.DataFrame:
        df = df.assign(decided=df["reached"] - df["undecided"])
        return df.groupby("stage")[["decided", "advanced"]].sum().reindex(names, fill_value=0)

    r, p = _sum(rep), _sum(peers)
    out = pd.DataFrame({"stage": names, "next_stage": [*names[1:], "won"]})
    out["rep_decided"] = r["decided"].to_numpy(int)
    out["rep_advanced"] = r["advanced"].to_numpy(int)
    out["peer_decided"] = p["decided"].to_numpy(int)
    out["peer_advanced"] = p["advanced"].to_numpy(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["rep_rate"] = out["rep_advanced"] / out["rep_decided"].where(out["rep_decided"] > 0)
        out["peer_rate"] = out["peer_advanced"] / out["peer_decided"].where(out["peer_decided"] > 0)
    out["gap"] = out["rep_rate"] - out["peer_rate"]
    lo, hi, worse, short, pv, test = [], [], [], [], [], []
    for row in out.itertuples():
        a, n, b, m = row.rep_advanced, row.rep_decided, row.peer_advanced, row.peer_decided
        if n == 0 or m == 0:
            lo.append(np.nan), hi.append(np.nan), worse.append(np.nan), short.append(0.0)
            pv.append(np.nan), test.append("")
            continue
        tr = rng.beta(a + 0.5, n - a + 0.5, _DRAWS)
        tp = rng.beta(b + 0.5, m - b + 0.5, _DRAWS)
        d = tr - tp
        lo.append(float(np.quantile(d, 0.05)))
        hi.append(float(np.quantile(d, 0.95)))
        worse.append(float((d < 0).mean()))
        short.append(max(0.0, float(-np.quantile(d, _CREDIBLE))))
        p_value, kind = _two_proportion_test(a, n, b, m)
        pv.append(p_value)
        test.append(kind)
    out["gap_low"], out["gap_high"], out["prob_worse"] = lo, hi, worse
    out["shortfall_low"], out["p_value"], out["test"] = short, pv, test
    out["deals_lost_vs_peers"] = (-out["gap"] * out["rep_decided"]).fillna(0.0)
    k = max(int(out["prob_worse"].notna().sum()), 1)
    out["flagged"] = out["prob_worse"].fillna(0) >= 1 - _FAMILY_ALPHA / k
    out["action"] = [STAGE_ACTIONS.get(s, _GENERIC_ACTION) for s in names]
    cols = [
        "stage",
        "next_stage",
        "rep_decided",
        "rep_advanced",
        "rep_rate",
        "peer_decided",
        "peer_advanced",
        "peer_rate",
        "gap",
        "gap_low",
        "gap_high",
        "prob_worse",
        "shortfall_low",
        "p_value",
        "test",
        "deals_lost_vs_peers",
        "flagged",
        "action",
    ]
    return out[cols]


def _two_proportion_test(a: int, n: int, b: int, m: int) -> tuple[float, str]:
    """Two-sided p-value of equal rates: z-test, or Fisher's exact test when an expected count is below 5."""
    pooled = (a + b) / (n + m)
    expected = np.array([n * pooled, n * (1 - pooled), m * pooled, m * (1 - pooled)])
    if (expected < 5).any():
        return float(stats.fisher_exact([[a, n - a], [b, m - b]])[1]), "fisher"
    from statsmodels.stats.proportion import proportions_ztest

    if pooled in (0.0, 1.0):
        return 1.0, "z"
    return float(proportions_ztest([a, b], [n, m])[1]), "z"


# ------------------------------------------------------------------------------------------- KPIs
def _kpis(crm: CRM, owner: str, team: str, period: str | None, peers: str) -> pd.DataFrame:
    from forecastkit.kpi.sales import deal_size, velocity, win_rate

    rows: list[dict[str, object]] = []
    teams = _owner_teams(crm)

    def _groups(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        rep = df[df["owner"] == owner]
        same = df["owner"].map(teams).fillna("") == team
        peer = df[(df["owner"] != owner) & (same if peers == "team" else True)]
        return rep, peer, df

    wr = win_rate(crm, period, by="owner")
    r, p, c = (g[["won", "closed"]].sum() for g in _groups(wr))
    pv = (
        _two_proportion_test(int(r["won"]), int(r["closed"]), int(p["won"]), int(p["closed"]))[0]
        if min(r["closed"], p["closed"]) > 0
        else np.nan
    )
    rows.append(
        _row(
            "win_rate",
            _div(r["won"], r["closed"]),
            _div(p["won"], p["closed"]),
            _div(c["won"], c["closed"]),
            pv,
            "share",
            "won / closed, deals closed in the period",
        )
    )
    ds = deal_size(crm, period, by="owner")
    r, p, c = (g[["won_amount", "won_deals"]].sum() for g in _groups(ds))
    rows.append(
        _row(
            "avg_deal_size",
            _div(r["won_amount"], r["won_deals"]),
            _div(p["won_amount"], p["won_deals"]),
            _div(c["won_amount"], c["won_deals"]),
            np.nan,
            crm.playbook.currency,
            "won amount / won deals",
        )
    )
    rows += _cycle_rows(crm, _groups, period)
    vel = velocity(crm, period, by="owner")
    r, p, c = (g["velocity_per_day"].mean() for g in _groups(vel))
    rows.append(
        _row(
            "velocity_per_day",
            r,
            p,
            c,
            np.nan,
            f"{crm.playbook.currency}/day",
            "opportunities x win rate x deal size / cycle; peers and company: mean per rep",
        )
    )
    rows += _activity_rows(crm, _groups, period)
    rows += _hygiene_rows(crm, _groups)
    rows.append(_forecast_bias_row(crm, _groups, period))
    out = pd.DataFrame(rows)
    out["gap"] = out["rep"] - out["peers"]
    return out[["kpi", "rep", "peers", "company", "gap", "p_value", "unit", "note"]]


def _row(kpi: str, rep: float, peers: float, company: float, p: float, unit: str, note: str) -> dict[str, object]:
    return {
        "kpi": kpi,
        "rep": float(rep),
        "peers": float(peers),
        "company": float(company),
        "p_value": p,
        "unit": unit,
        "note": note,
    }


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else np.nan


def _owner_teams(crm: CRM) -> pd.Series:
    o = crm.opportunities.dropna(subset=["owner"])
    t = o.dropna(subset=["team"]).groupby("owner")["team"].agg(lambda s: s.mode().iloc[0])
    if crm.has("reps") and len(crm.reps):
        t = crm.reps.dropna(subset=["team"]).set_index("owner")["team"].combine_first(t)
    return t.astype(object)


def _cycle_rows(crm: CRM, groups, period: str | None) -> list[dict[str, object]]:
    from lifelines import KaplanMeierFitter

    from forecastkit.kpi.cycle import cycle_data

    d = cycle_data(crm, by="owner")
    if period is not None:
        p = parse_period(period, crm.playbook)
        d = d[(d["created_at"] >= p.start) & (d["created_at"] < p.end)]
    closed_med, km_med = [], []
    for g in groups(d):
        days, closed = g["days"].to_numpy(float), g["closed"].to_numpy(bool)
        closed_med.append(float(np.median(days[closed])) if closed.any() else np.nan)
        if closed.any():
            km_med.append(float(KaplanMeierFitter().fit(days, closed).median_survival_time_))
        else:
            km_med.append(np.nan)
    return [
        _row("cycle_closed_median_days", *closed_med, np.nan, "days", "closed deals of the creation cohort only"),
        _row("cycle_km_median_days", *km_med, np.nan, "days", "Kaplan-Meier median, open deals censored"),
    ]


def _activity_rows(crm: CRM, groups, period: str | None) -> list[dict[str, object]]:
    if not crm.has("activities"):
        return []
    a = crm.activities
    a = a[a["done_at"].notna() & a["owner"].notna()]
    if period is not None:
        p = parse_period(period, crm.playbook)
        a = a[(a["done_at"] >= p.start) & (a["done_at"] < p.end)]
    rows = []
    shares = []
    for g in groups(a):
        counts = g["type"].value_counts().reindex(list(ACTIVITY_TYPES), fill_value=0)
        shares.append(counts / max(int(counts.sum()), 1))
    for t in ACTIVITY_TYPES:
        rows.append(
            _row(
                f"activity_share_{t}",
                shares[0][t],
                shares[1][t],
                shares[2][t],
                np.nan,
                "share",
                f"share of {t}s among activities done",
            )
        )
    return rows


def _hygiene_rows(crm: CRM, groups) -> list[dict[str, object]]:
    from forecastkit.hygiene import scorecard

    if not crm.has("activities"):
        return []
    sc = scorecard(crm)
    wide = sc.pivot_table(index="owner", columns="kpi", values="value").reset_index()
    rows = []
    if "cadence_compliance" in wide:
        cc = [g["cadence_compliance"].mean() for g in groups(wide)]
        rows.append(
            _row(
                "cadence_compliance",
                *cc,
                np.nan,
                "share",
                "cadence steps done on time (hygiene.scorecard); peers and company: mean per rep",
            )
        )
    share_kpis = [
        k
        for k in (
            "next_step_coverage",
            "within_age_cap",
            "mandatory_fields_complete",
            "cadence_compliance",
            "data_completeness",
        )
        if k in wide
    ]
    wide["_score"] = wide[share_kpis].mean(axis=1)
    hs = [g["_score"].mean() for g in groups(wide)]
    rows.append(
        _row(
            "hygiene_score",
            *hs,
            np.nan,
            "share",
            f"mean of the hygiene scorecard shares ({', '.join(share_kpis)}) on open deals",
        )
    )
    return rows


def _forecast_bias_row(crm: CRM, groups, period: str | None) -> dict[str, object]:
    """Forecast bias of the reps' calls over the finished periods (``forecast_accuracy``'s ``bias``).

    Each rep's last commit call of each finished period is the forecast, what the rep won
    in that period the actual; the bias of a group is ``sum(call - won) / sum(won)``
    (:func:`~forecastkit.forecast.accuracy.forecast_accuracy`: positive = optimistic; calls
    without a commit amount are left out).
    """
    from forecastkit.forecast.accuracy import forecast_accuracy

    if not crm.has("forecast_calls") or crm.forecast_calls.empty:
        return _row("forecast_bias", np.nan, np.nan, np.nan, np.nan, "share", "no forecast calls")
    calls = crm.forecast_calls.sort_values("submitted_at", kind="stable")
    last = calls.groupby(["owner", "period"], sort=False).tail(1)
    ends = {p: parse_period(str(p), crm.playbook) for p in last["period"].unique()}
    done = [p for p, per in ends.items() if per.end <= crm.as_of_date + pd.Timedelta(days=1)]
    if period is not None:
        want = parse_period(period, crm.playbook)
        done = [p for p in done if ends[p].start >= want.start and ends[p].end <= want.end]
    last = last[last["period"].isin(done)]
    won = crm.opportunities[crm.opportunities["status"] == "won"]
    when = won["closed_at"].fillna(won["close_date"])
    per_label = pd.Series(pd.NA, index=won.index, dtype=object)
    for p in done:
        per_label[(when >= ends[p].start) & (when < ends[p].end)] = p
    actual = won.assign(period=per_label).dropna(subset=["period"]).groupby(["owner", "period"])["amount"].sum()
    last = last.assign(actual=[actual.get((o, p), 0.0) for o, p in zip(last["owner"], last["period"], strict=True)])
    calls_won = last.rename(columns={"commit": "forecast"})
    vals = [float(forecast_accuracy(g[["forecast", "actual"]], by=None)["bias"].iloc[0]) for g in groups(calls_won)]
    return _row(
        "forecast_bias",
        *vals,
        np.nan,
        "share",
        "sum(last commit call - won) / sum(won) over the finished periods (forecast_accuracy's bias)",
    )
