"""Build the deal tables (opportunities, history, field_history, activities) from the latent timeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecastkit.playbook import Playbook

from .scenarios import PRODUCTS, SEGMENTS, SOURCES, SimParams
from .simulate import Deals, Reps, owner_at, to_date, to_timestamp

__all__ = ["DealTables", "build_deal_tables"]

_CATS = np.array(["closed", "commit", "best_case", "pipeline", "omitted"], dtype=object)
_COMPETITORS = np.array(["Globex", "Initech", "Umbrella Soft", "Hooli", "Northwind CRM"], dtype=object)
_LOSS = np.array(["price", "competitor", "no_decision", "timing", "product_fit", "unqualified", "abandoned"], dtype=object)
_NEXT = (
    ("First call", "Send intro deck", "Book discovery call"),
    ("Qualification call", "Confirm budget", "Identify economic buyer"),
    ("Demo", "Workshop with users", "Validate decision criteria"),
    ("Send proposal", "Review proposal with buyer", "Answer RFP questions"),
    ("Negotiate terms", "Legal review", "Book signature date"),
)
_ROLES = np.array(["CFO", "CEO", "COO", "Head of Sales", "IT Director", "Procurement Manager", "VP Operations"], dtype=object)
_NEEDS = np.array(["Reduce manual reporting", "Replace legacy tool", "Scale the team", "Improve forecast accuracy",
                   "Integrate ERP data"], dtype=object)
_PAINS = np.array(["Slow month-end close", "Lost deals through neglect", "No pipeline visibility", "Data silos"], dtype=object)
_METRICS = np.array(["-20% admin time", "+5 pts win rate", "ROI in 9 months", "-30% cycle time"], dtype=object)
_CRIT = np.array(["Price and integration", "Ease of use", "Security review", "Total cost of ownership"], dtype=object)
_PROC = np.array(["Committee vote", "CFO sign-off", "Procurement then legal", "Board approval"], dtype=object)
_BOX_TEXT = (
    ("Context: {}.", ("met the ops lead about renewal", "first visit after inbound request", "follow-up on demo")),
    ("Discovery: {}.", ("pain confirmed, budget approved", "criteria shared", "decision makers mapped")),
    ("Proofs: {}.", ("case study well received", "objection on price", "reference call requested")),
    ("Risks: {}.", ("competitor in the loop", "budget freeze possible", "legal review may slip")),
    ("Next step: {}.", ("send proposal by Friday", "call booked next week", "workshop on the 15th")),
)
_ACT_TYPES = np.array(["call", "email", "visit", "meeting", "social"], dtype=object)
_ACT_MIX = np.array([
    [0.45, 0.35, 0.05, 0.10, 0.05],
    [0.45, 0.35, 0.05, 0.10, 0.05],
    [0.30, 0.30, 0.15, 0.20, 0.05],
    [0.25, 0.35, 0.15, 0.20, 0.05],
    [0.30, 0.35, 0.10, 0.20, 0.05],
])
_ACT_RATE = np.array([0.0, 0.10, 0.12, 0.14, 0.18])


@dataclass
class DealTables:
    """The deal tables plus latent by-products the truth needs."""

    opportunities: pd.DataFrame
    history: pd.DataFrame
    field_history: pd.DataFrame
    activities: pd.DataFrame
    cadence_truth: pd.DataFrame
    field_state: dict[str, np.ndarray]  # per deal: value known at as_of (object arrays, None = empty)
    next_date_at_asof: np.ndarray  # float days, NaN = empty
    category: np.ndarray  # (n, 5) category code per stage


def _ffill_rows(values: np.ndarray) -> np.ndarray:
    """Forward-fill NaN along axis 0 (the first row must be set)."""
    ok = ~np.isnan(values)
    idx = np.where(ok, np.arange(len(values)), 0)
    np.maximum.accumulate(idx, out=idx)
    return values[idx]


def _pick(rng: np.random.Generator, choices: np.ndarray, n: int) -> np.ndarray:
    return choices[rng.integers(0, len(choices), n)]


def _amount_revisions(
    rng: np.random.Generator, d: Deals, s: int, amt: np.ndarray, last_amt_t: np.ndarray, end_t: np.ndarray,
    per_month: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Re-quotes while stage ``s`` is worked: Poisson(``per_month`` per 30 days) amount changes per deal.

    The window runs from the later of the stage entry and the deal's latest amount row to the
    end of the worked part of the stage (before the close and ``as_of``), so each revision
    starts from the amount then current. Updates ``amt`` and ``last_amt_t`` in place (final
    amount and time per deal); returns ``(deal, time, new amount)`` sorted by deal and time.
    """
    lo = np.maximum(d.enter[:, s], last_amt_t)
    hi = np.minimum(d.active_end[:, s], end_t)
    w = np.where(np.isnan(lo) | np.isnan(hi), 0.0, np.clip(hi - lo, 0.0, None))
    k = rng.poisson(w * per_month / 30.0)
    i = np.repeat(np.arange(d.n), k)
    m = len(i)
    if m == 0:
        return i, np.zeros(0), np.zeros(0)
    t = lo[i] + w[i] * rng.uniform(0.02, 0.98, m)
    step = rng.normal(0.0, 0.1, m)
    o = np.lexsort((t, i))
    t, step = t[o], step[o]
    first = np.cumsum(k) - k  # first row of each deal
    cum = np.cumsum(step)
    cum -= np.repeat(cum[first[k > 0]] - step[first[k > 0]], k[k > 0])
    new = np.maximum(np.round(amt[i] * np.exp(cum) / 100) * 100, 500.0)
    last = first[k > 0] + k[k > 0] - 1
    amt[i[last]] = new[last]
    last_amt_t[i[last]] = t[last]
    return i, t, new


def build_deal_tables(
    rng: np.random.Generator, d: Deals, reps: Reps, params: SimParams, pb: Playbook, start: pd.Timestamp,
    horizon: float, account_idx: np.ndarray, account_ids: np.ndarray, account_names: np.ndarray,
    contact_name: np.ndarray, shape_rng: np.random.Generator | None = None,
) -> DealTables:
    """Assemble the four deal tables (events strictly before ``horizon``).

    ``shape_rng`` draws the amount re-quotes (``params.amount_revisions_per_month``) apart from
    ``rng`` so that the other tables' draws do not move; it is needed only when that rate is > 0.
    """
    n, n_st = d.n, 5
    A = horizon
    stages = np.array(pb.stage_names + ("won", "lost"), dtype=object)
    end_t = np.minimum(d.close, A)
    opt = reps.optimism[d.rep]
    hyg = reps.hygiene[d.rep]
    ids = np.char.add("OPP-", np.char.zfill(np.arange(1, n + 1).astype(str), max(6, len(str(n)))))
    created = d.enter[np.arange(n), d.entry]

    # ---- forecast category per stage (rep optimism), codes into _CATS
    u = rng.random((n, n_st))
    o = (opt - 1.0)[:, None]
    cat = np.empty((n, n_st), dtype=np.int64)
    cat[:, 0] = np.where(u[:, 0] < 0.3, 4, 3)
    cat[:, 1] = 3
    cat[:, 2] = np.where(u[:, 2] < np.clip(0.1 + 0.8 * o[:, 0], 0, 0.6), 2, 3)
    cat[:, 3] = np.where(u[:, 3] < np.clip(0.1 + 0.9 * o[:, 0], 0, 0.8), 1, 2)
    cat[:, 4] = np.where(u[:, 4] < np.clip(0.7 + 0.6 * o[:, 0], 0, 0.98), 1, 2)

    # ---- close-date trajectory: first date from the rep's (optimistic) view, pushed when it passes
    exp_rem = np.nansum(np.where(np.arange(n_st)[None, :] >= d.entry[:, None], d.scale * params.dwell_shape, 0), axis=1)
    cd = np.floor(created + exp_rem * params.close_date_optimism / opt * rng.uniform(0.6, 1.2, n)) + 1
    ev_i, ev_t, ev_code, ev_stage, ev_amt, ev_cd, ev_cat = [], [], [], [], [], [], []

    def _add(i: np.ndarray, t: np.ndarray, code: int, stage=None, amt=None, cdv=None, catv=None) -> None:
        m = len(i)
        ev_i.append(i)
        ev_t.append(t)
        ev_code.append(np.full(m, code))
        ev_stage.append(np.full(m, -1) if stage is None else stage)
        ev_amt.append(np.full(m, np.nan) if amt is None else amt)
        ev_cd.append(np.full(m, np.nan) if cdv is None else cdv)
        ev_cat.append(np.full(m, -1) if catv is None else catv)

    allx = np.arange(n)
    _add(allx, created, 0, d.entry, d.amount0, cd.astype(float), cat[allx, d.entry])
    for s in range(1, n_st):
        i = np.flatnonzero((d.entry < s) & (d.last_stage >= s) & (d.enter[:, s] < A))
        _add(i, d.enter[i, s], 1, np.full(len(i), s), None, None, cat[i, s])
    closed = d.close < A
    i = np.flatnonzero(closed)
    _add(i, d.close[i], 5, np.where(d.will_win[i], 5, 6), None, np.floor(d.close[i]), np.where(d.will_win[i], 0, 4))
    # amount changes: one likely change after entering qualification / proposal / negotiation,
    # then (amount_revisions_per_month > 0) re-quotes while the stage is worked
    amt = d.amount0.copy()
    last_amt_t = created.copy()  # time of each deal's latest amount row
    main_change = {1: (0.3, 0.05, 0.3), 3: (0.5, -0.05, 0.25), 4: (0.35, -0.07, 0.1)}
    for s in range(1, n_st):
        if s in main_change:
            p, mu, sd = main_change[s]
            t = d.enter[:, s] + rng.uniform(1, 8, n)
            ok = ~np.isnan(d.enter[:, s]) & (rng.random(n) < p) & (t < end_t) & (t < d.close)
            i = np.flatnonzero(ok)
            new = np.maximum(np.round(amt[i] * np.exp(rng.normal(mu, sd, len(i))) / 100) * 100, 500.0)
            amt[i] = new
            last_amt_t[i] = t[i]
            _add(i, t[i], 2, None, new)
        if params.amount_revisions_per_month > 0:
            i, t, new = _amount_revisions(shape_rng, d, s, amt, last_amt_t, end_t, params.amount_revisions_per_month)
            _add(i, t, 2, None, new)
    # category downgrade of neglected deals
    t = d.active_end[allx, np.clip(d.last_stage, 0, 4)] + 30
    ok = d.neglected & (d.last_stage >= 2) & (t < end_t) & (rng.random(n) > hyg)
    i = np.flatnonzero(ok)
    _add(i, t[i], 4, None, None, None, np.full(len(i), 4))
    # close-date pushes
    cur = cd.astype(float)
    live = np.ones(n, dtype=bool)
    for _ in range(60):
        t = cur + rng.uniform(0, 7, n)
        live &= t < end_t
        if not live.any():
            break
        i = np.flatnonzero(live)
        new = np.floor(t[i] + 7 + rng.gamma(2.0, 12.0 * params.slip_mult, len(i)))
        cur[i] = new
        _add(i, t[i], 3, None, None, new)

    hi = np.concatenate(ev_i)
    ht = np.concatenate(ev_t)
    hc = np.concatenate(ev_code)
    order = np.lexsort((hc, ht, hi))
    hi, ht = hi[order], ht[order]
    hs = _ffill_rows(np.where(np.concatenate(ev_stage) < 0, np.nan, np.concatenate(ev_stage))[order]).astype(int)
    ha = _ffill_rows(np.concatenate(ev_amt)[order])
    hcd = _ffill_rows(np.concatenate(ev_cd)[order])
    hcat = _ffill_rows(np.where(np.concatenate(ev_cat) < 0, np.nan, np.concatenate(ev_cat))[order]).astype(int)
    history = pd.DataFrame({
        "opportunity_id": ids[hi],
        "changed_at": to_timestamp(start, ht),
        "stage": stages[hs],
        "amount": ha,
        "close_date": to_date(start, hcd),
        "forecast_category": _CATS[hcat],
    })
    last = np.r_[np.flatnonzero(np.diff(hi)), len(hi) - 1]

    # ---- field history: qualification fields at qualification entry, MEDDIC process fields at discovery
    q_t = d.enter[:, 1]
    reach1 = ~np.isnan(q_t) & (q_t < A)
    reach2 = ~np.isnan(d.enter[:, 2]) & (d.enter[:, 2] < A)
    f = d.f
    fh_i, fh_t, fh_field, fh_old, fh_new = [], [], [], [], []
    state: dict[str, np.ndarray] = {}

    def _fh(fieldname: str, mask: np.ndarray, t: np.ndarray, values: np.ndarray) -> None:
        i = np.flatnonzero(mask)
        fh_i.append(i)
        fh_t.append(t[i])
        fh_field.append(np.full(len(i), fieldname, dtype=object))
        fh_old.append(np.full(len(i), None, dtype=object))
        fh_new.append(values[i])
        st = np.full(n, None, dtype=object)
        st[i] = values[i]
        state[fieldname] = st

    cname = contact_name[account_idx]
    champ_txt = np.char.add(cname.astype(str), " (sponsor)").astype(object)
    budget_v = np.round(amt * rng.uniform(0.8, 1.6, n) / 1000) * 1000
    timing_v = to_date(start, created + rng.uniform(30, 180, n)).astype("datetime64[D]").astype(str).astype(object)
    dt = rng.uniform(0, 0.5, n)
    _fh("budget", reach1 & f["budget"], q_t + dt, np.array([f"{v:.0f}" for v in budget_v], dtype=object))
    _fh("decision_maker", reach1 & f["decision_maker"], q_t + dt, _pick(rng, _ROLES, n))
    _fh("need", reach1 & (rng.random(n) < 0.85 * (1 - hyg)), q_t + dt, _pick(rng, _NEEDS, n))
    _fh("timing", reach1 & (rng.random(n) < 0.6 * (1 - hyg)), q_t + dt, timing_v)
    _fh("metrics", reach1 & f["metrics"], q_t + dt, _pick(rng, _METRICS, n))
    _fh("pain", reach1 & f["pain"], q_t + dt, _pick(rng, _PAINS, n))
    _fh("champion", reach1 & f["champion"], q_t + dt, champ_txt)
    t2 = d.enter[:, 2] + rng.uniform(0, 3, n)
    _fh("decision_criteria", reach2 & (t2 < A) & (rng.random(n) < 0.65), t2, _pick(rng, _CRIT, n))
    _fh("decision_process", reach2 & (t2 < A) & (rng.random(n) < 0.5), t2, _pick(rng, _PROC, n))

    # next steps: at creation, at each stage entry and periodically while the deal is worked
    up_i, up_t, up_s = [allx], [created], [d.entry]
    for s in range(n_st):
        vis = ~np.isnan(d.enter[:, s])
        if s > 0:
            i = np.flatnonzero(vis & (d.entry < s) & (d.enter[:, s] < A))
            up_i.append(i)
            up_t.append(d.enter[i, s])
            up_s.append(np.full(len(i), s))
        period = rng.uniform(18, 35, n)
        w_end = np.minimum(np.where(vis, d.active_end[:, s], 0), A)
        k = np.clip(np.floor((w_end - np.where(vis, d.enter[:, s], 0)) / period), 0, 12).astype(int)
        k = np.where(vis & (d.enter[:, s] < A), k, 0)
        i = np.repeat(allx, k)
        j = np.arange(len(i)) - np.repeat(np.cumsum(k) - k, k) + 1
        up_i.append(i)
        up_t.append(d.enter[i, s] + j * period[i])
        up_s.append(np.full(len(i), s))
    ui = np.concatenate(up_i)
    ut = np.concatenate(up_t)
    us = np.concatenate(up_s)
    keep = (ut < A) & (ut < d.close[ui])
    ui, ut, us = ui[keep], ut[keep], us[keep]
    o2 = np.lexsort((ut, ui))
    ui, ut, us = ui[o2], ut[o2], us[o2]
    m = len(ui)
    p_undated = np.clip(reps.hygiene[d.rep[ui]] * 0.9, 0, 0.7)
    first = np.r_[True, ui[1:] != ui[:-1]]
    ndate = ut + rng.uniform(2, 14, m)
    ndate = np.where(first & (us == 0), created[ui] + rng.uniform(0, 1.5, m), ndate)
    ndate = np.where(~first & (rng.random(m) < p_undated), np.nan, ndate)
    texts = np.array([t for row in _NEXT for t in row], dtype=object)
    nstep = texts[us * 3 + rng.integers(0, 3, m)]
    ndate_s = to_date(start, ndate).astype("datetime64[D]").astype(str).astype(object)
    ndate_s[np.isnan(ndate)] = None
    prev_step = np.r_[None, nstep[:-1]].astype(object)
    prev_date = np.r_[None, ndate_s[:-1]].astype(object)
    prev_step[first] = None
    prev_date[first] = None
    ch = nstep != prev_step
    fh_i += [ui[ch]]
    fh_t += [ut[ch]]
    fh_field += [np.full(int(ch.sum()), "next_step", dtype=object)]
    fh_old += [prev_step[ch]]
    fh_new += [nstep[ch]]
    ch = ~((ndate_s == prev_date) | (pd.isna(ndate_s) & pd.isna(prev_date)))
    fh_i += [ui[ch]]
    fh_t += [ut[ch] + 1e-5]
    fh_field += [np.full(int(ch.sum()), "next_step_date", dtype=object)]
    fh_old += [prev_date[ch]]
    fh_new += [ndate_s[ch]]
    last_u = np.r_[np.flatnonzero(np.diff(ui)), m - 1]
    state["next_step"] = np.full(n, None, dtype=object)
    state["next_step"][ui[last_u]] = nstep[last_u]
    next_date_asof = np.full(n, np.nan)
    next_date_asof[ui[last_u]] = np.floor(ndate[last_u])

    fi = np.concatenate(fh_i)
    ft = np.concatenate(fh_t)
    ff = np.concatenate(fh_field)
    keep = ft < A
    fi, ft, ff = fi[keep], ft[keep], ff[keep]
    fo, fn = np.concatenate(fh_old)[keep], np.concatenate(fh_new)[keep]
    o3 = np.lexsort((ff, ft, fi))
    field_history = pd.DataFrame({
        "opportunity_id": ids[fi[o3]],
        "changed_at": to_timestamp(start, ft[o3]),
        "field": ff[o3],
        "old_value": fo[o3],
        "new_value": fn[o3],
    })

    # ---- opportunities: final state = last history row
    li = hi[last]
    assert np.array_equal(li, allx)
    st_final = hs[last]
    closed_at = np.where(closed, np.floor(d.close), np.nan)
    loss_reason = np.full(n, None, dtype=object)
    lost = closed & ~d.will_win
    lr = rng.choice(len(_LOSS) - 1, n, p=[0.25, 0.0, 0.25, 0.2, 0.15, 0.15])
    lr = np.where(d.f["competitor"] & (rng.random(n) < 0.6), 1, lr)
    lr = np.where(d.loss_stage <= 1, np.where(rng.random(n) < 0.5, 5, lr), lr)
    lr = np.where(d.neglected, 6, lr)
    loss_reason[lost] = _LOSS[lr[lost]]
    comp = np.where(d.f["competitor"], _pick(rng, _COMPETITORS, n), None)
    prob = np.array([s.crm_probability for s in pb.stages] + [1.0, 0.0])[st_final]
    acc = account_ids[account_idx]
    ndate_state = np.where(np.isnan(next_date_asof), np.nan, next_date_asof)
    opp = pd.DataFrame({
        "opportunity_id": ids,
        "account_id": acc,
        "name": np.char.add(np.char.add(account_names[account_idx].astype(str), " - "),
                            np.array(PRODUCTS, dtype=str)[d.f["product"]]).astype(object),
        "owner": reps.name[d.owner],
        "team": reps.team[d.owner],
        "business_unit": reps.business_unit[d.owner],
        "segment": np.array(SEGMENTS, dtype=object)[d.f["segment"]],
        "source": np.array(SOURCES, dtype=object)[d.f["source"]],
        "product": np.array(PRODUCTS, dtype=object)[d.f["product"]],
        "created_at": to_timestamp(start, created),
        "close_date": to_date(start, hcd[last]),
        "amount": ha[last],
        "currency": "EUR",
        "stage": stages[st_final],
        "status": np.where(~closed, "open", np.where(d.will_win, "won", "lost")).astype(object),
        "closed_at": to_date(start, closed_at),
        "forecast_category": _CATS[hcat[last]],
        "probability": prob,
        "loss_reason": loss_reason,
        "competitor": comp,
        "discount": d.f["discount"],
        "next_step": state["next_step"],
        "next_step_date": to_date(start, ndate_state),
        "budget": pd.to_numeric(pd.Series(state["budget"], dtype=object), errors="coerce").to_numpy(float),
        "decision_maker": state["decision_maker"],
        "need": state["need"],
        "timing": pd.to_datetime(pd.Series(state["timing"], dtype=object)).to_numpy("datetime64[ns]"),
        "metrics": state["metrics"],
        "decision_criteria": state["decision_criteria"],
        "decision_process": state["decision_process"],
        "pain": state["pain"],
        "champion": state["champion"],
    })

    activities, cadence_truth = _activities(rng, d, reps, pb, start, A, ids, acc, created, params.activity_mult)
    return DealTables(opp, history, field_history, activities, cadence_truth, state, next_date_asof, cat)


def _activities(
    rng: np.random.Generator, d: Deals, reps: Reps, pb: Playbook, start: pd.Timestamp, A: float,
    ids: np.ndarray, acc: np.ndarray, created: np.ndarray, activity_mult: float = 1.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cadence touches of new leads and stage activities (rate ``_ACT_RATE`` per day x ``activity_mult``)."""
    n = d.n
    disc = reps.discipline[d.rep]
    # ---- cadence on leads created in to_contact
    lead = np.flatnonzero(d.entry == 0)
    ft = created[lead]  # the sequence starts at the lead's creation: due dates are recoverable from the CRM
    exit0 = np.where(np.isnan(d.enter[lead, 1]), d.close[lead], d.enter[lead, 1])
    c_i, c_due, c_created, c_done, c_step, c_type, c_out, c_row = [], [], [], [], [], [], [], []
    for step in pb.cadence:
        due = ft + step.day
        ok = (due < exit0) & (due < A)
        i = lead[ok]
        due = due[ok]
        m = len(i)
        u = rng.random(m)
        on_time = u < disc[i]
        late = ~on_time & (u < disc[i] + (1 - disc[i]) * 0.6)
        done = np.where(on_time, due + rng.uniform(0, 1, m) * (np.floor(due) + 1 - due) * 0.95,
                        np.floor(due) + 1 + rng.uniform(0, 5, m))
        done = np.where(on_time | late, done, np.nan)
        late &= done < A
        missed = ~(on_time | late)
        done = np.where(missed, np.nan, done)
        row = ~missed | (rng.random(m) < 0.5)
        c_i.append(i)
        c_due.append(due)
        c_created.append(np.where(step.day == 0, ft[ok], np.maximum(due - rng.uniform(0, 1, m), ft[ok])))
        c_done.append(done)
        c_step.append(np.full(m, step.name, dtype=object))
        c_type.append(np.full(m, step.type, dtype=object))
        c_out.append(np.where(on_time, "on_time", np.where(late, "late", "missed")).astype(object))
        c_row.append(row)
    ci = np.concatenate(c_i)
    cstep = np.concatenate(c_step)
    cout = np.concatenate(c_out)
    crow = np.concatenate(c_row)
    cad_truth = pd.DataFrame({"opportunity_id": ids[ci], "cadence_step": cstep, "outcome": cout})
    order = np.lexsort((np.array([c.day for c in pb.cadence])[pd.Index([c.name for c in pb.cadence]).get_indexer(cstep)], ci))
    cad_truth = cad_truth.iloc[order].reset_index(drop=True)

    # ---- stage activities during the worked part of each stage
    a_i, a_due, a_type = [], [], []
    won_mult = np.where(d.will_win, 1.3, 1.0)
    for s in range(1, 5):
        vis = ~np.isnan(d.enter[:, s])
        w = np.where(vis, np.minimum(d.active_end[:, s], d.close) - d.enter[:, s], 0.0)
        k = rng.poisson(np.clip(w, 0, None) * _ACT_RATE[s] * won_mult * activity_mult)
        k = np.where(vis, k, 0)
        i = np.repeat(np.arange(n), k)
        t = d.enter[i, s] + rng.random(len(i)) * w[i]
        a_i.append(i)
        a_due.append(t)
        a_type.append(_ACT_TYPES[(rng.random(len(i))[:, None] > np.cumsum(_ACT_MIX[s])[None, :]).sum(axis=1).clip(0, 4)])
    si = np.concatenate(a_i)
    sdue = np.concatenate(a_due)
    stype = np.concatenate(a_type)
    m = len(si)
    screated = np.maximum(sdue - rng.uniform(0, 7, m), created[si])
    late = rng.random(m) < (1 - disc[si]) * 0.5
    sdone = np.where(late, sdue + rng.uniform(1, 10, m), sdue + rng.uniform(0, 0.2, m))
    sdone = np.where(rng.random(m) < 0.06, np.nan, sdone)
    # combine
    ai = np.concatenate([ci[crow], si])
    due = np.concatenate([np.concatenate(c_due)[crow], sdue])
    cr = np.concatenate([np.concatenate(c_created)[crow], screated])
    done = np.concatenate([np.concatenate(c_done)[crow], sdone])
    typ = np.concatenate([np.concatenate(c_type)[crow], stype])
    step = np.concatenate([cstep[crow], np.full(m, None, dtype=object)])
    keep = cr < A
    ai, due, cr, done, typ, step = ai[keep], due[keep], cr[keep], done[keep], typ[keep], step[keep]
    done = np.where(done < A, done, np.nan)
    o = np.lexsort((due, ai))
    ai, due, cr, done, typ, step = ai[o], due[o], cr[o], done[o], typ[o], step[o]
    k = len(ai)
    # reports on done visits and meetings
    hyg = reps.hygiene[d.rep[ai]]
    is_rep = np.isin(typ, ["visit", "meeting"]) & ~np.isnan(done)
    has_report = is_rep & (rng.random(k) > np.clip(0.1 + 1.2 * hyg, 0, 0.9))
    boxes = rng.random((k, 5)) < np.array([0.9, 0.8, 0.7, 0.65, 0.75])[None, :] * (1 - 0.5 * hyg)[:, None]
    boxes[:, 0] |= has_report & ~boxes.any(axis=1)
    boxes &= has_report[:, None]
    report = np.full(k, None, dtype=object)
    ri = np.flatnonzero(has_report)
    parts = []
    for b, (tpl, opts) in enumerate(_BOX_TEXT):
        txt = np.array([tpl.format(x) for x in opts], dtype=object)[rng.integers(0, len(opts), len(ri))]
        parts.append(np.where(boxes[ri, b], txt, ""))
    if len(ri):
        joined = parts[0]
        for p in parts[1:]:
            joined = np.char.add(np.char.add(joined.astype(str), " "), p.astype(str))
        report[ri] = np.char.strip(joined.astype(str)).astype(object)
    flags = {}
    for b, name in enumerate(("report_context", "report_discovery", "report_proofs", "report_risks", "report_next_step")):
        v = pd.array(boxes[:, b], dtype="boolean")
        v[~is_rep] = pd.NA
        flags[name] = v
    owner = owner_at(d, ai, due)
    act = pd.DataFrame({
        "activity_id": np.char.add("ACT-", np.char.zfill(np.arange(1, k + 1).astype(str), max(7, len(str(k))))),
        "opportunity_id": ids[ai],
        "account_id": acc[ai],
        "owner": reps.name[owner],
        "type": typ,
        "cadence_step": step,
        "created_at": to_timestamp(start, cr),
        "due_at": to_timestamp(start, due),
        "done_at": to_timestamp(start, done),
        "report": report,
        **flags,
    })
    return act, cad_truth
