"""Accounts, contacts, orders, subscriptions, targets, costs, forecast calls and reps tables."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecastkit.playbook import Playbook

from .scenarios import SEGMENTS
from .simulate import Deals, Reps, owner_at, person_names, to_date

__all__ = ["assign_accounts", "build_contacts", "build_orders", "build_subscriptions", "build_targets",
           "build_costs", "build_forecast_calls", "build_reps", "fiscal_quarter", "Accounts"]

_ADJ = ("Blue", "North", "Bright", "Silver", "Green", "Rapid", "Prime", "Alpine", "Urban", "Solid", "Nova", "Atlas")
_NOUN = ("River", "Peak", "Forge", "Harbor", "Field", "Stone", "Bridge", "Cloud", "Works", "Logic", "Metal", "Foods")
_SUFFIX = ("SA", "GmbH", "SAS", "Ltd", "BV", "SpA", "AG", "Group")
_INDUSTRY = np.array(["manufacturing", "retail", "software", "logistics", "healthcare", "finance", "energy"], dtype=object)
_TITLES = np.array(["CFO", "Head of Sales", "IT Director", "Buyer", "Operations Manager", "CEO", "Controller"], dtype=object)
_DEPTS = np.array(["Finance", "Sales", "IT", "Purchasing", "Operations", "General Management"], dtype=object)


@dataclass
class Accounts:
    """Latent accounts (arrays by account) and the deal -> account index."""

    ids: np.ndarray
    names: np.ndarray
    segment: np.ndarray
    owner: np.ndarray
    created: np.ndarray
    industry: np.ndarray
    deal_account: np.ndarray
    is_base: np.ndarray


def _company_names(rng: np.random.Generator, n: int) -> np.ndarray:
    a = np.array(_ADJ, dtype=object)[rng.integers(0, len(_ADJ), n)]
    b = np.array(_NOUN, dtype=object)[rng.integers(0, len(_NOUN), n)]
    c = np.array(_SUFFIX, dtype=object)[rng.integers(0, len(_SUFFIX), n)]
    return a + " " + b + " " + c


def assign_accounts(rng: np.random.Generator, d: Deals, reps: Reps, horizon: float) -> Accounts:
    """One new account per deal except ~15% that reuse an account of the same segment; plus a customer base."""
    n = d.n
    new = rng.random(n) >= 0.15
    new[:3] = True
    seg = d.f["segment"]
    new_idx = np.flatnonzero(new)
    deal_acc = np.empty(n, dtype=np.int64)
    deal_acc[new_idx] = np.arange(len(new_idx))
    for s in range(3):
        pool = np.flatnonzero(new & (seg == s))
        reuse = np.flatnonzero(~new & (seg == s))
        if len(pool) == 0:
            pool = new_idx
        deal_acc[reuse] = deal_acc[pool[rng.integers(0, len(pool), len(reuse))]]
    n_new = len(new_idx)
    n_base = max(6, int(2.5 * len(reps.skill)))
    active = np.flatnonzero(~np.isfinite(reps.end) & (reps.start < horizon))
    created = np.full(n_new + n_base, np.inf)
    dc = d.enter[np.arange(n), d.entry]
    np.minimum.at(created, deal_acc, dc - rng.uniform(0, 20, n))
    created[n_new:] = -rng.uniform(60, 2000, n_base)
    created = np.floor(created)
    acc_seg = np.empty(n_new + n_base, dtype=np.int64)
    acc_seg[deal_acc] = seg
    acc_seg[n_new:] = rng.choice(3, n_base, p=[0.5, 0.35, 0.15])
    owner = np.empty(n_new + n_base, dtype=np.int64)
    owner[deal_acc[::-1]] = d.owner[::-1]  # first deal's (current) owner
    owner[n_new:] = active[rng.integers(0, len(active), n_base)] if len(active) else 0
    tot = n_new + n_base
    ids = np.char.add("ACC-", np.char.zfill(np.arange(1, tot + 1).astype(str), max(6, len(str(tot))))).astype(object)
    return Accounts(ids, _company_names(rng, tot), acc_seg, owner, created, _INDUSTRY[rng.integers(0, 7, tot)],
                    deal_acc, np.r_[np.zeros(n_new, bool), np.ones(n_base, bool)])


def build_accounts_table(rng: np.random.Generator, acc: Accounts, reps: Reps, start: pd.Timestamp) -> pd.DataFrame:
    """The accounts table (some phones and websites missing)."""
    n = len(acc.ids)
    phone = np.array([f"+33 1 {a:02d} {b:02d} {c:02d} {e:02d}" for a, b, c, e in rng.integers(0, 100, (n, 4))],
                     dtype=object)
    phone[rng.random(n) < 0.15] = None
    slug = pd.Series(acc.names).str.lower().str.replace(" ", "-", regex=False).to_numpy(object)
    web = np.array(["www." + s + ".example" for s in slug], dtype=object)
    web[rng.random(n) < 0.2] = None
    return pd.DataFrame({
        "account_id": acc.ids, "name": acc.names, "segment": np.array(SEGMENTS, dtype=object)[acc.segment],
        "industry": acc.industry, "owner": reps.name[acc.owner], "created_at": to_date(start, acc.created),
        "phone": phone, "website": web,
    })


def build_contacts(
    rng: np.random.Generator, acc: Accounts, start: pd.Timestamp, horizon: float
) -> tuple[pd.DataFrame, np.ndarray]:
    """Contacts with gaps, some invalid emails/phones and a few duplicates; also a name per account."""
    n_acc = len(acc.ids)
    k = 1 + rng.poisson(1.2, n_acc)
    ai = np.repeat(np.arange(n_acc), k)
    m = len(ai)
    names = person_names(rng, m) if m < 1000 else np.array(
        [f"{a} {b}" for a, b in zip(rng.choice(["Anne", "Paul", "Sofia", "Tom", "Lina", "Omar", "Eva", "Jan"], m),
                                    rng.choice(["Dupuis", "Keller", "Moretti", "Haas", "Blanc", "Vidal", "Lenoir"], m),
                                    strict=True)], dtype=object)
    first_contact = np.r_[0, np.cumsum(k)[:-1]]
    slug = pd.Series(names).str.lower().str.replace(" ", ".", regex=False).to_numpy(object)
    dom = pd.Series(acc.names[ai]).str.lower().str.replace(" ", "", regex=False).to_numpy(object)
    email = (slug + "@" + dom + ".example").astype(object)
    bad = rng.random(m)
    email[bad < 0.02] = (slug[bad < 0.02] + "_at_" + dom[bad < 0.02]).astype(object)
    email[(bad >= 0.02) & (bad < 0.03)] = "n/a"
    email[rng.random(m) < 0.1] = None
    phone = np.array([f"+33 6 {a:02d} {b:02d} {c:02d} {e:02d}" for a, b, c, e in rng.integers(0, 100, (m, 4))],
                     dtype=object)
    bp = rng.random(m)
    phone[bp < 0.02] = "0000"
    phone[rng.random(m) < 0.25] = None
    title = _TITLES[rng.integers(0, len(_TITLES), m)]
    title[rng.random(m) < 0.2] = None
    dept = _DEPTS[rng.integers(0, len(_DEPTS), m)]
    dept[rng.random(m) < 0.3] = None
    created = np.minimum(acc.created[ai] + np.floor(rng.exponential(20, m)), horizon - 31)
    df = pd.DataFrame({"account_id": acc.ids[ai], "name": names, "job_title": title, "department": dept,
                       "email": email, "phone": phone, "created_at": to_date(start, created)})
    dup = df[rng.random(m) < 0.02].copy()
    dup["created_at"] = dup["created_at"] + pd.Timedelta(days=30)
    df = pd.concat([df, dup], ignore_index=True)
    n = len(df)
    df.insert(0, "contact_id", np.char.add("CON-", np.char.zfill(np.arange(1, n + 1).astype(str), max(6, len(str(n))))))
    return df, names[first_contact]


def build_orders(
    rng: np.random.Generator, d: Deals, acc: Accounts, reps: Reps, amounts: np.ndarray, start: pd.Timestamp,
    horizon: float, opp_ids: np.ndarray, cycle_days: tuple[float, ...] = (30.0, 60.0, 90.0),
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Orders of customers (won accounts + a base of repeat buyers); returns (orders, stopped truth, first-won time).

    A repeat customer orders every ``cycle_days[j]`` days (j drawn with shares 0.40 / 0.35 / 0.25,
    gaps log-normal +-15%), amounts proportional to the cycle (the same value per month).
    """
    A = horizon
    n_acc = len(acc.ids)
    won = np.flatnonzero(d.will_win)
    first_won = np.full(n_acc, np.inf)
    np.minimum.at(first_won, acc.deal_account[won], d.close[won])
    first_deal = np.full(n_acc, -1)
    wi = won[np.argsort(d.close[won])[::-1]]
    first_deal[acc.deal_account[wi]] = wi
    cust = np.flatnonzero(np.isfinite(first_won) | acc.is_base)
    nc = len(cust)
    cycles = np.asarray(cycle_days, dtype=float)
    cycle = rng.choice(cycles, nc, p=[0.4, 0.35, 0.25])
    base = acc.is_base[cust]
    first = np.where(base, rng.uniform(0, 1, nc) * cycle, first_won[cust])
    repeat = base | (rng.random(nc) < 0.7)
    stop = np.where(rng.random(nc) < 0.3, first + rng.uniform(0, 1, nc) * (A + 365 - first), np.inf)
    level = np.where(base, np.exp(rng.normal(np.log(4000), 0.7, nc)),
                     amounts[np.maximum(first_deal[cust], 0)] / 12.0) * cycle / 30.0
    min_gap = float(cycles.min()) * 18.0 / 30.0  # 18 days for the default monthly cycle
    kmax = int(np.ceil((A - max(0.0, float(first.min(initial=0)))) / min_gap)) + 2 if nc else 1
    gaps = cycle[:, None] * np.exp(rng.normal(0, 0.15, (nc, kmax)))
    gaps[:, 0] = 0.0
    t = first[:, None] + np.cumsum(gaps, axis=1)
    ok = (t < A) & (t < stop[:, None]) & (repeat[:, None] | (np.arange(kmax)[None, :] == 0))
    ci, kk = np.nonzero(ok)
    tt = t[ci, kk]
    m = len(ci)
    from_deal = (kk == 0) & ~base[ci]
    amount = np.where(from_deal, amounts[np.maximum(first_deal[cust[ci]], 0)],
                      np.round(level[ci] * np.exp(rng.normal(0, 0.25, m)), 2))
    discount = np.where(rng.random(m) < 0.5, 0.0, np.round(rng.uniform(0.02, 0.25, m), 2))
    margin = np.round(amount * np.clip(0.45 - discount + rng.normal(0, 0.05, m), 0.02, 0.7), 2)
    inv = tt + rng.uniform(1, 10, m)
    promised = np.floor(tt) + rng.integers(7, 31, m)
    delivered = promised + np.where(rng.random(m) < 0.25, rng.uniform(1, 15, m), -rng.uniform(0, 3, m))
    delivered = np.where((rng.random(m) < 0.02) | (delivered >= A), np.nan, np.maximum(delivered, tt))
    o = np.lexsort((tt, ci))
    ci, tt, amount, discount, margin, inv, promised, delivered, kk, from_deal = (
        a[o] for a in (ci, tt, amount, discount, margin, inv, promised, delivered, kk, from_deal))
    ac = cust[ci]
    owner = acc.owner[ac]
    deal_idx = first_deal[ac]
    owner = np.where(from_deal, owner_at(d, np.maximum(deal_idx, 0), tt), owner)
    opp = np.where(from_deal, opp_ids[np.maximum(deal_idx, 0)], None)
    ninv = np.isnan(np.where(inv < A, inv, np.nan))
    orders = pd.DataFrame({
        "order_id": np.char.add("ORD-", np.char.zfill(np.arange(1, m + 1).astype(str), max(6, len(str(m))))),
        "account_id": acc.ids[ac],
        "owner": reps.name[owner],
        "opportunity_id": opp,
        "ordered_at": to_date(start, tt),
        "amount": amount,
        "margin": margin,
        "discount": discount,
        "invoiced_at": to_date(start, np.where(ninv, np.nan, inv)),
        "invoiced_amount": np.where(ninv, np.nan, amount),
        "promised_delivery": to_date(start, promised),
        "delivered_at": to_date(start, delivered),
    })
    has_order = np.zeros(nc, dtype=bool)
    has_order[np.unique(ci)] = True
    st = np.flatnonzero((stop < A) & has_order & repeat)
    stopped = pd.DataFrame({"account_id": acc.ids[cust[st]], "stopped_at": to_date(start, stop[st]),
                            "usual_cycle_days": cycle[st]})
    return orders, stopped.sort_values("account_id", ignore_index=True), first_won


def month_starts(start: pd.Timestamp, as_of: pd.Timestamp) -> pd.DatetimeIndex:
    """First days of the months from ``start``'s month to ``as_of``'s month."""
    return pd.date_range(start.to_period("M").to_timestamp(), as_of, freq="MS")


def build_subscriptions(
    rng: np.random.Generator, d: Deals, acc: Accounts, first_won: np.ndarray, amounts: np.ndarray,
    start: pd.Timestamp, as_of: pd.Timestamp,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Monthly MRR with expansion, contraction and heterogeneous (beta-geometric) churn."""
    months = month_starts(start, as_of)
    mt = ((months - start) / pd.Timedelta(days=1)).to_numpy(float)
    n_acc = len(acc.ids)
    won = np.flatnonzero(d.will_win & np.isin(d.f["product"], [0, 1]))
    sub_start = np.full(n_acc, np.inf)
    np.minimum.at(sub_start, acc.deal_account[won], d.close[won])
    mrr0 = np.zeros(n_acc)
    mrr0[acc.deal_account[won]] = amounts[won] / 12.0
    base = acc.is_base & (rng.random(n_acc) < 0.4)
    sub_start[base] = -1.0
    mrr0[base] = np.exp(rng.normal(np.log(1500), 0.6, int(base.sum())))
    subs = np.flatnonzero(np.isfinite(sub_start))
    ns = len(subs)
    churn_p = rng.beta(0.8, 25.0, ns)
    mrr = np.round(mrr0[subs] * rng.uniform(0.8, 1.2, ns), 2)
    alive = np.ones(ns, dtype=bool)
    churned = np.full(ns, np.nan)
    rows_a, rows_m, rows_v = [], [], []
    for j, t in enumerate(mt):
        started = sub_start[subs] < t
        rows = np.flatnonzero(started & alive)
        rows_a.append(rows)
        rows_m.append(np.full(len(rows), j))
        rows_v.append(mrr[rows].copy())
        u = rng.random(ns)
        die = started & alive & (u < churn_p)
        churned[die] = t + 30
        alive &= ~die
        e = rng.random(ns)
        mrr = np.where(e < 0.03, np.round(mrr * rng.uniform(1.1, 1.4, ns), 2), mrr)
        mrr = np.where((e >= 0.03) & (e < 0.05), np.round(mrr * rng.uniform(0.7, 0.9, ns), 2), mrr)
    ra = np.concatenate(rows_a)
    rm = np.concatenate(rows_m)
    rv = np.concatenate(rows_v)
    o = np.lexsort((rm, ra))
    df = pd.DataFrame({"account_id": acc.ids[subs[ra[o]]], "month": months.to_numpy()[rm[o]], "mrr": rv[o]})
    df = df.sort_values(["account_id", "month"], ignore_index=True)
    truth = pd.DataFrame({"account_id": acc.ids[subs], "monthly_churn_probability": churn_p,
                          "churned_month": to_date(start, np.where(churned < mt[-1] + 31, churned, np.nan))})
    return df, truth.sort_values("account_id", ignore_index=True)


def fiscal_quarter(ts: pd.DatetimeIndex | pd.Series, pb: Playbook) -> np.ndarray:
    """Fiscal quarter labels like ``2026-Q4`` (fiscal years named by the calendar year they end in)."""
    ts = pd.DatetimeIndex(ts)
    m0 = pb.fiscal_year_start_month
    fy = ts.year + ((ts.month >= m0) & (m0 != 1)).astype(int)
    q = ((ts.month - m0) % 12) // 3 + 1
    return np.char.add(np.char.add(np.asarray(fy).astype(str), "-Q"), np.asarray(q).astype(str))


def build_targets(
    d: Deals, reps: Reps, orders: pd.DataFrame, amounts: np.ndarray, start: pd.Timestamp, as_of: pd.Timestamp,
    pb: Playbook, rng: np.random.Generator,
) -> pd.DataFrame:
    """Monthly and fiscal-quarter targets per rep and team, calibrated to each rep's latent capacity."""
    n_reps = len(reps.skill)
    end = (as_of + pd.offsets.MonthBegin(0) + pd.DateOffset(months=6)).normalize()
    months = pd.date_range(start.to_period("M").to_timestamp(), end, freq="MS")
    mt = ((months - start) / pd.Timedelta(days=1)).to_numpy(float)
    won = np.flatnonzero(d.will_win)
    own = owner_at(d, won, d.close[won])
    horizon_days = float((months[-1] - start).days)
    act_days = np.clip(np.minimum(reps.end, horizon_days) - np.maximum(reps.start, 0.0), 30, None)
    in_win = d.close[won] < horizon_days
    bookings = np.bincount(own[in_win], weights=amounts[won][in_win], minlength=n_reps) / act_days * 30.44
    name_idx = pd.Index(reps.name)
    ord_owner = name_idx.get_indexer(orders["owner"].astype(object))
    ord_m = np.bincount(ord_owner, weights=orders["amount"].to_numpy(float), minlength=n_reps) / act_days * 30.44
    ord_n = np.bincount(ord_owner, minlength=n_reps) / act_days * 30.44
    stretch = rng.uniform(1.0, 1.2, n_reps)
    active = (reps.start[:, None] <= mt[None, :] + 15) & (reps.end[:, None] > mt[None, :] + 15)
    ri, mi = np.nonzero(active)
    per_metric = {
        "bookings": np.round(bookings * stretch / 1000) * 1000,
        "ordered": np.round(ord_m * stretch / 100) * 100,
        "invoiced": np.round(ord_m * stretch * 0.98 / 100) * 100,
        "orders": np.round(ord_n * stretch),
    }
    mlab = months.strftime("%Y-%m").to_numpy(object)
    qlab = fiscal_quarter(months, pb).astype(object)
    frames = []
    for metric, val in per_metric.items():
        base = pd.DataFrame({"owner": reps.name[ri], "team": reps.team[ri], "m": mlab[mi], "q": qlab[mi],
                             "amount": val[ri]})
        for per in ("m", "q"):
            rep_t = base.groupby(["owner", "team", per], sort=True)["amount"].sum().reset_index()
            team_t = rep_t.groupby(["team", per], sort=True)["amount"].sum().reset_index()
            team_t["owner"] = None
            for t in (rep_t, team_t):
                t["metric"] = metric
                frames.append(t.rename(columns={per: "period"})[["owner", "team", "period", "metric", "amount"]])
    out = pd.concat(frames, ignore_index=True)
    out.loc[out["owner"].notna(), "team"] = None
    return out.sort_values(["metric", "period", "team", "owner"], ignore_index=True, na_position="first")


def build_costs(d: Deals, reps: Reps, amounts: np.ndarray, start: pd.Timestamp, as_of: pd.Timestamp,
                rng: np.random.Generator) -> pd.DataFrame:
    """Marketing (cost per lead by source) and sales (salaries + commission) costs per month."""
    months = month_starts(start, as_of)
    mt = np.r_[((months - start) / pd.Timedelta(days=1)).to_numpy(float), np.inf]
    created = d.enter[np.arange(d.n), d.entry]
    mi = np.searchsorted(mt, created, side="right") - 1
    cpl = np.array([120.0, 40.0, 200.0, 300.0, 50.0])[d.f["source"]]
    nm = len(months)
    marketing = np.bincount(mi, weights=cpl, minlength=nm)[:nm] * rng.uniform(0.9, 1.1, nm) + 5000
    won = np.flatnonzero(d.will_win)
    wm = np.searchsorted(mt, d.close[won], side="right") - 1
    ok = wm < nm
    commission = np.bincount(wm[ok], weights=0.06 * amounts[won][ok], minlength=nm)[:nm]
    heads = ((reps.start[:, None] <= mt[None, :nm]) & (reps.end[:, None] > mt[None, :nm])).sum(axis=0)
    sales = heads * 9000.0 + commission
    return pd.DataFrame({"period": months.strftime("%Y-%m"), "marketing": np.round(marketing, 2),
                         "sales": np.round(sales, 2)})


def build_forecast_calls(
    rng: np.random.Generator, d: Deals, reps: Reps, amounts: np.ndarray, start: pd.Timestamp,
    as_of: pd.Timestamp, pb: Playbook,
) -> pd.DataFrame:
    """Weekly (Friday) commit and best-case calls per rep for every fiscal quarter up to ``as_of``.

    ``commit = won_to_date + bias * (final_quarter_bookings - won_to_date) * noise`` with the rep's
    bias and a mean-one log-normal noise shrinking as the quarter ends; ``best_case`` adds
    20-60% of the remaining part on top of the commit.
    """
    fridays = pd.date_range(start + pd.Timedelta(days=90), as_of - pd.Timedelta(days=1), freq="W-FRI")
    if len(fridays) == 0:
        return pd.DataFrame(columns=["submitted_at", "owner", "period", "commit", "best_case"])
    q = fiscal_quarter(fridays, pb)
    qstart = pd.PeriodIndex(fridays, freq=f"Q-{_q_end_month(pb)}").start_time
    qend = pd.PeriodIndex(fridays, freq=f"Q-{_q_end_month(pb)}").end_time.normalize() + pd.Timedelta(days=1)
    ft = ((fridays - start) / pd.Timedelta(days=1)).to_numpy(float) + 1.0
    qs = ((qstart - start) / pd.Timedelta(days=1)).to_numpy(float)
    qe = ((qend - start) / pd.Timedelta(days=1)).to_numpy(float)
    won = np.flatnonzero(d.will_win)
    own = owner_at(d, won, d.close[won])
    ct = d.close[won]
    amt = amounts[won]
    rows = []
    n_reps = len(reps.skill)
    # per quarter (few): final bookings per rep; per friday: won to date
    for w in range(len(fridays)):
        in_q = (ct >= qs[w]) & (ct < qe[w])
        final = np.bincount(own[in_q], weights=amt[in_q], minlength=n_reps)
        done = in_q & (ct < ft[w])
        to_date_ = np.bincount(own[done], weights=amt[done], minlength=n_reps)
        act = np.flatnonzero((reps.start <= ft[w]) & (reps.end > ft[w]))
        rem_frac = np.clip((qe[w] - ft[w]) / (qe[w] - qs[w]), 0, 1)
        noise = np.exp(rng.normal(-0.5 * (0.3 * rem_frac) ** 2, 0.3 * rem_frac, len(act)))
        rest = np.maximum(final[act] - to_date_[act], 0.0)
        commit = to_date_[act] + reps.optimism[act] * rest * noise
        best = commit + rest * rng.uniform(0.2, 0.6, len(act)) + reps.optimism[act] * 0.1 * final[act]
        rows.append(pd.DataFrame({"submitted_at": fridays[w], "owner": reps.name[act], "period": q[w],
                                  "commit": np.round(commit, -2), "best_case": np.round(best, -2)}))
    return pd.concat(rows, ignore_index=True)


def _q_end_month(pb: Playbook) -> str:
    m = (pb.fiscal_year_start_month - 2) % 12 + 1
    return ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")[m - 1]


def build_reps(reps: Reps, start: pd.Timestamp) -> pd.DataFrame:
    """The reps table."""
    return pd.DataFrame({"owner": reps.name, "team": reps.team, "business_unit": reps.business_unit,
                         "manager": reps.manager, "start_date": to_date(start, reps.start),
                         "end_date": to_date(start, np.where(np.isfinite(reps.end), reps.end, np.nan))})



