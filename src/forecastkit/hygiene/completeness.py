"""Customer-data health: completeness and validity of contacts and accounts, new prospects per period.

Dashboard 3 of domain section 9: completeness of the contact base (name, job
title, department, email, phone), a data-quality index, and the number of new
prospects created per period.

Definitions
-----------
* **Completeness** of an entity: share of its checked cells that are filled.
* **Valid**: an e-mail matches ``local@domain.tld``; a phone, once spaces, dots,
  dashes, slashes and parentheses are removed, is an optional ``+`` followed by
  8 to 15 digits, not all zeros. Other fields are valid when filled.
* **Duplicate**: a contact with the same e-mail (case-insensitive) as an earlier
  one, or the same name at the same account; an account with the same name
  (case- and space-insensitive) as an earlier one. The first record is the
  original, the others are duplicates.
* **Data-quality index**: the share of checked cells that are filled *and*
  valid, counting every cell of a duplicate record as unusable. 1 = every
  record complete, valid and unique.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from forecastkit.data.crm import CRM
from forecastkit.errors import ParameterError
from forecastkit.hygiene._deals import account_owner, obj, owners_of_accounts, select
from forecastkit.periods import Freq, parse_period, period_of

__all__ = ["CompletenessReport", "completeness", "CONTACT_FIELDS", "ACCOUNT_FIELDS", "valid_email", "valid_phone"]

CONTACT_FIELDS = ("name", "job_title", "department", "email", "phone")
ACCOUNT_FIELDS = ("name", "segment", "industry", "owner", "phone", "website")
_EMAIL = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"


@dataclass(frozen=True)
class CompletenessReport:
    """Result of :func:`completeness`.

    Attributes
    ----------
    summary : DataFrame
        One row per entity (``contacts``, ``accounts``): ``entity, records,
        completeness, invalid_values`` (filled e-mails and phones that are not
        valid), ``duplicates, duplicate_rate, quality_index``.
    fields : DataFrame
        ``entity, field, filled, invalid, records, completeness`` per checked field.
    by_owner : DataFrame
        Contacts per account owner (``accounts.owner``, else the owner of the account's latest deal):
        ``owner, contacts, completeness, quality_index``.
    by_account : DataFrame
        Accounts with at least one contact problem: ``account_id, owner,
        contacts, incomplete_contacts, invalid_values, duplicates, missing``
        (the missing contact fields with their counts, e.g. ``"phone x2, email"``).
    new_prospects : DataFrame
        ``period, new_accounts, new_contacts`` per period (accounts and contacts
        by creation date), oldest first.
    """

    summary: pd.DataFrame
    fields: pd.DataFrame
    by_owner: pd.DataFrame
    by_account: pd.DataFrame
    new_prospects: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """The per-entity summary."""
        return self.summary

    def _repr_html_(self) -> str:
        return (
            "<p><b>Data completeness and quality</b></p>"
            + self.summary.to_html(index=False)
            + "<p><b>New prospects per period</b></p>"
            + self.new_prospects.tail(12).to_html(index=False)
        )


def _arrow(s: pd.Series) -> pa.Array:
    """A text column as a pyarrow string array (nulls where missing), for fast vectorised string functions."""
    return pa.array(np.asarray(s.array, dtype=object), type=pa.string(), from_pandas=True)  # pd.NA -> null


def _bool(arr: pa.Array, index: pd.Index) -> pd.Series:
    return pd.Series(pd.array(arr.to_pandas(), dtype="boolean"), index=index)


def _email_ok(a: pa.Array) -> pa.Array:
    return pc.match_substring_regex(pc.utf8_trim_whitespace(a), _EMAIL)


_SEP = r"[\s.\-/()]*"


def _phone_ok(a: pa.Array) -> pa.Array:
    # the phone rule on the raw text: separators may sit anywhere around the "+" and the digits
    # (one regex match each, about five times faster than removing the separators first)
    digits = pc.match_substring_regex(a, rf"^{_SEP}(\+{_SEP})?([0-9]{_SEP}){{8,15}}$")
    zeros = pc.match_substring_regex(a, rf"^{_SEP}(\+{_SEP})?(0{_SEP})+$")
    return pc.and_(digits, pc.invert(zeros))


def valid_email(s: pd.Series) -> pd.Series:
    """True where a filled e-mail looks like ``local@domain.tld`` (NA where empty)."""
    return _bool(_email_ok(_arrow(s)), s.index)


def valid_phone(s: pd.Series) -> pd.Series:
    """True where a filled phone has 8-15 digits (after removing separators) and is not all zeros (NA where empty)."""
    return _bool(_phone_ok(_arrow(s)), s.index)


def _encoded(a: pa.Array) -> pa.DictionaryArray:
    return a if isinstance(a, pa.DictionaryArray) else pc.dictionary_encode(a)


def _valid_mask(a: pa.Array, check) -> np.ndarray:
    """``check`` as a boolean array (False where empty); on the distinct values only when ``a`` is dictionary-encoded.

    (Encoding costs about as much as one regular-expression pass: it pays only when it is shared.)
    """
    if not isinstance(a, pa.DictionaryArray):
        return np.asarray(check(a).fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    enc = a
    ok = np.asarray(check(enc.dictionary).fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    return np.where(codes >= 0, ok[codes], False) if len(ok) else np.zeros(len(a), dtype=bool)


def _norm_codes(a: pa.Array) -> np.ndarray:
    """Integer code of each value's normalised form (lowercase, trimmed, single spaces); -1 where missing.

    The normalisation runs on the distinct values only. ``a`` may be dictionary-encoded already.
    """
    enc = _encoded(a)
    norm_codes = _distinct_norm_codes(enc.dictionary)
    codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64")
    return np.where(codes >= 0, norm_codes[np.maximum(codes, 0)] if len(norm_codes) else -1, -1)


def _distinct_norm_codes(values: pa.Array) -> np.ndarray:
    """:func:`_norm_codes` of distinct, non-missing values (no encoding first)."""
    norm = pc.utf8_trim_whitespace(pc.utf8_lower(values))
    if pc.any(pc.match_substring_regex(norm, r"\s\s|[^\S ]")).as_py():  # rare: collapse runs of whitespace
        norm = pc.replace_substring_regex(norm, r"\s+", " ")
    return pc.dictionary_encode(norm).indices.to_numpy(zero_copy_only=False).astype("int64")


def _dup_key(*cols: pd.Series | pa.Array | np.ndarray) -> np.ndarray:
    """True for every record after the first with the same normalised key (lowercase, trimmed, single spaces).

    A record with any key part missing is never a duplicate. A part given as an integer
    array is taken as its normalised codes already (-1 where missing).
    """
    key = np.zeros(len(cols[0]), dtype="int64")
    valid = np.ones(len(cols[0]), dtype=bool)
    for col in cols:
        codes = col if isinstance(col, np.ndarray) else _norm_codes(_arrow(col) if isinstance(col, pd.Series) else col)
        valid &= codes >= 0
        # combine the parts into one code per record (re-factorised so the mixed radix never overflows)
        key, _ = pd.factorize(key * (int(codes.max(initial=0)) + 1) + np.maximum(codes, 0))
    dup = np.zeros(len(key), dtype=bool)
    dup[valid] = pd.Index(key[valid]).duplicated(keep="first")
    return dup


def completeness(
    crm: CRM,
    *,
    freq: Freq = "month",
    contact_fields: Sequence[str] = CONTACT_FIELDS,
    account_fields: Sequence[str] = ACCOUNT_FIELDS,
    owner: str | Iterable[str] | None = None,
) -> CompletenessReport:
    """Completeness, validity and duplicates of contacts and accounts; new prospects per period.

    Parameters
    ----------
    crm : CRM
        The snapshot; needs ``contacts`` (``accounts`` is used when present).
        Only records created on or before the snapshot date count.
    freq : {"month", "quarter", "half", "year"}
        Period of the new-prospect counts (fiscal periods of the playbook).
    contact_fields, account_fields : sequence of str
        Columns checked for completeness.
    owner : str or list of str, optional
        Keep only the accounts of these owners (and their contacts).

    Returns
    -------
    CompletenessReport
        Frames listed in :class:`CompletenessReport`; the rules are in the module docstring.

    Raises
    ------
    SchemaError
        The snapshot has no ``contacts`` table.
    ParameterError
        A checked field is not a column of the table.
    """
    contacts = crm.require("contacts", "data completeness")
    accounts = crm.accounts
    _check_cols(contacts, contact_fields, "contacts", "contact_fields")
    _check_cols(accounts, account_fields, "accounts", "account_fields")
    acc_owner = account_owner(crm)
    c = _with_owner(crm, contacts)
    a = accounts
    if owner is not None:
        c = select(c, owner, None)
        keep = select(pd.DataFrame({"owner": accounts["account_id"].map(acc_owner).astype("string")}), owner, None)
        a = accounts.loc[keep.index]
    c_cells = _cells(c, contact_fields, _contact_dups(c))
    a_cells = _cells(a, account_fields, _account_dups(a))
    summary = pd.DataFrame([_summary("contacts", *c_cells), _summary("accounts", *a_cells)])
    fields = pd.concat([_fields("contacts", contact_fields, *c_cells), _fields("accounts", account_fields, *a_cells)])
    return CompletenessReport(
        summary=summary,
        fields=fields.reset_index(drop=True),
        by_owner=_by_owner(c, *c_cells),
        by_account=_by_account(c, contact_fields, *c_cells),
        new_prospects=_new_prospects(a, c, freq, crm),
    )


def _with_owner(crm: CRM, contacts: pd.DataFrame, acc: tuple[np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:
    """The contacts with their account's owner (see :func:`account_owner`).

    ``acc``: :func:`_account_codes` of ``contacts`` when already computed.
    """
    codes, accounts = _account_codes(contacts) if acc is None else acc
    per_account = np.append(owners_of_accounts(crm, accounts), None)  # code -1 (no account) reads the trailing None
    return contacts.assign(owner=pd.array(per_account[codes], dtype="string"))


def _account_codes(c: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize`` of the contacts' account ids: (code per contact, -1 when missing; distinct ids)."""
    codes, accounts = pd.factorize(obj(c["account_id"]))
    return codes, np.asarray(accounts, dtype=object)


def contact_problems(crm: CRM, contact_fields: Sequence[str] = CONTACT_FIELDS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(by_owner, by_account)`` of :func:`completeness` for every contact, without the rest of the report.

    What the pipeline review and the data-health dashboard need: the same frames as
    ``completeness(crm).by_owner`` and ``.by_account``, skipping the account checks and
    the new-prospect counts.
    """
    by_owner, by_account = _shared_contact_problems(crm, contact_fields)
    return by_owner.copy(), by_account.copy()


#: ``contact_problems`` of a snapshot per tuple of contact fields, computed once: the pipeline review
#: and the data-health dashboard both need them (snapshot tables are read-only, so they never go stale)
_PROBLEMS: weakref.WeakKeyDictionary[CRM, dict[tuple[str, ...], tuple[pd.DataFrame, pd.DataFrame]]] = (
    weakref.WeakKeyDictionary()
)


def _shared_contact_problems(
    crm: CRM, contact_fields: Sequence[str] = CONTACT_FIELDS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(by_owner, by_account)`` of :func:`contact_problems`, once per snapshot and fields (shared frames: read only)."""
    memo = _PROBLEMS.setdefault(crm, {})
    key = tuple(str(f) for f in contact_fields)
    if key not in memo:
        c, cells, acc = _contact_cells(crm, contact_fields)
        memo[key] = (_by_owner(c, *cells), _by_account(c, contact_fields, *cells, acc=acc))
    return memo[key]


def _account_problems(crm: CRM, contact_fields: Sequence[str] = CONTACT_FIELDS) -> pd.DataFrame:
    """``contact_problems(crm)[1]`` alone (what the pipeline review needs; a shared frame: read only)."""
    return _shared_contact_problems(crm, contact_fields)[1]


def _contact_cells(crm: CRM, contact_fields: Sequence[str]) -> tuple[pd.DataFrame, tuple, tuple]:
    """Every contact with its owner, the (filled, valid, dup) cells, and the account codes."""
    contacts = crm.require("contacts", "data completeness")
    _check_cols(contacts, contact_fields, "contacts", "contact_fields")
    acc = _account_codes(contacts)
    c = _with_owner(crm, contacts, acc)
    pre = {}
    if "email" in c.columns:  # encoded once for the duplicate key and the validity check
        pre["email"] = pc.dictionary_encode(_arrow(c["email"]))
    cells = _cells(c, contact_fields, _contact_dups(c, acc, pre.get("email")), pre)
    return c, cells, acc


def _check_cols(df: pd.DataFrame, cols: Sequence[str], table: str, arg: str) -> None:
    bad = [x for x in cols if x not in df.columns]
    if bad:
        raise ParameterError(f"{arg}: {bad} are not columns of the '{table}' table; available: {', '.join(df.columns)}")


def _contact_dups(
    c: pd.DataFrame, acc: tuple[np.ndarray, np.ndarray] | None = None, email: pa.Array | None = None
) -> np.ndarray:
    if acc is None:
        return _dup_key(c["email"] if email is None else email) | _dup_key(c["account_id"], c["name"])
    codes, accounts = acc
    norm = _distinct_norm_codes(pa.array(accounts, type=pa.string()))  # normalised on the distinct ids only
    acc_norm = np.where(codes >= 0, norm[np.maximum(codes, 0)] if len(norm) else -1, -1)
    return _dup_key(c["email"] if email is None else email) | _dup_key(acc_norm, c["name"])


def _account_dups(a: pd.DataFrame) -> np.ndarray:
    return _dup_key(a["name"])


def _cells(
    df: pd.DataFrame, cols: Sequence[str], dup: np.ndarray, pre: dict[str, pa.Array] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(filled, valid, dup): boolean matrices records x fields (valid = filled and well-formed) and duplicates.

    ``pre``: arrow arrays of columns already converted (e.g. the dictionary-encoded e-mails).
    """
    pre = pre or {}
    n = len(df)
    filled = np.zeros((n, len(cols)), dtype=bool)
    valid = np.zeros((n, len(cols)), dtype=bool)
    for j, col in enumerate(cols):
        s = df[col]
        f = s.notna().to_numpy(bool)
        filled[:, j] = f
        if col == "email":
            valid[:, j] = _valid_mask(pre[col] if col in pre else _arrow(s), _email_ok)
        elif col == "phone":
            valid[:, j] = _valid_mask(pre[col] if col in pre else _arrow(s), _phone_ok)
        else:
            valid[:, j] = f
    return filled, valid, dup


def _summary(entity: str, filled: np.ndarray, valid: np.ndarray, dup: np.ndarray) -> dict[str, object]:
    n, k = filled.shape
    cells = n * k
    invalid = int((filled & ~valid).sum())
    usable = (valid & ~dup[:, None]).sum()
    return {
        "entity": entity,
        "records": n,
        "completeness": filled.sum() / cells if cells else np.nan,
        "invalid_values": invalid,
        "duplicates": int(dup.sum()),
        "duplicate_rate": dup.mean() if n else np.nan,
        "quality_index": usable / cells if cells else np.nan,
    }


def _fields(entity: str, cols: Sequence[str], filled: np.ndarray, valid: np.ndarray, dup: np.ndarray) -> pd.DataFrame:
    n = filled.shape[0]
    return pd.DataFrame(
        {
            "entity": entity,
            "field": list(cols),
            "records": n,
            "filled": filled.sum(axis=0).astype("int64"),
            "invalid": (filled & ~valid).sum(axis=0).astype("int64"),
            "completeness": filled.mean(axis=0) if n else np.full(len(cols), np.nan),
        }
    )


def _by_owner(c: pd.DataFrame, filled: np.ndarray, valid: np.ndarray, dup: np.ndarray) -> pd.DataFrame:
    k = filled.shape[1]
    df = pd.DataFrame(
        {
            "owner": c["owner"].to_numpy(dtype=object),
            "filled": filled.sum(axis=1),
            "usable": (valid & ~dup[:, None]).sum(axis=1),
        }
    ).dropna(subset=["owner"])
    g = df.groupby("owner", sort=True)
    out = pd.DataFrame({"contacts": g.size().astype("int64")})
    out["completeness"] = g["filled"].sum() / (out["contacts"] * k)
    out["quality_index"] = g["usable"].sum() / (out["contacts"] * k)
    out = out.rename_axis("owner").reset_index()
    out["owner"] = out["owner"].astype("string")
    return out


def _by_account(
    c: pd.DataFrame,
    cols: Sequence[str],
    filled: np.ndarray,
    valid: np.ndarray,
    dup: np.ndarray,
    acc: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    incomplete = ~filled.all(axis=1)
    invalid = (filled & ~valid).sum(axis=1)
    bad = incomplete | (invalid > 0) | dup
    cols_out = ["account_id", "owner", "contacts", "incomplete_contacts", "invalid_values", "duplicates", "missing"]
    if not bad.any():
        return pd.DataFrame(
            {
                col: pd.Series(dtype="string" if col in ("account_id", "owner", "missing") else "int64")
                for col in cols_out
            }
        )
    codes, accounts = _account_codes(c) if acc is None else acc
    has = codes >= 0
    codes, n_acc = codes[has], len(accounts)

    def per_account(values: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=values[has], minlength=n_acc).astype("int64")

    contacts = np.bincount(codes, minlength=n_acc)
    n_incomplete, n_invalid, n_dup = per_account(incomplete), per_account(invalid), per_account(dup)
    keep = np.flatnonzero((n_incomplete > 0) | (n_invalid > 0) | (n_dup > 0))
    # owner of the account's first contact row
    first_row = np.full(n_acc, len(codes), dtype="int64")
    np.minimum.at(first_row, codes, np.arange(len(codes)))
    owner = obj(c["owner"])[has][first_row[keep]]
    # "phone x2, email": built once per distinct combination of missing counts
    missing = np.zeros((len(keep), len(cols)), dtype="int64")
    for j in range(len(cols)):
        missing[:, j] = per_account(~filled[:, j])[keep]
    which = np.zeros(len(keep), dtype="int64")
    for j in range(len(cols)):
        which, _ = pd.factorize(which * (int(missing[:, j].max(initial=0)) + 1) + missing[:, j])
    combos = np.zeros((int(which.max(initial=-1)) + 1, len(cols)), dtype="int64")
    combos[which] = missing
    words = [
        ", ".join(col if n == 1 else f"{col} x{n}" for col, n in zip(cols, row, strict=True) if n > 0)
        for row in combos.tolist()
    ]
    text = np.asarray(words, dtype=object)[which] if len(keep) else np.array([], dtype=object)
    out = pd.DataFrame(
        {
            "account_id": pd.array(np.asarray(accounts, dtype=object)[keep], dtype="string"),
            "owner": pd.array(owner, dtype="string"),
            "contacts": contacts[keep].astype("int64"),
            "incomplete_contacts": n_incomplete[keep],
            "invalid_values": n_invalid[keep],
            "duplicates": n_dup[keep],
            "missing": pd.array(text, dtype="string"),
        }
    )
    return out[cols_out]


def _new_prospects(a: pd.DataFrame, c: pd.DataFrame, freq: Freq, crm: CRM) -> pd.DataFrame:
    def labels(dates: pd.Series) -> pd.Series:
        month = dates.dt.to_period("M").dt.to_timestamp()
        uniq = month.dropna().unique()
        mapping = {m: str(period_of(m, freq, crm.playbook)) for m in uniq}
        return month.map(mapping)

    na = labels(a["created_at"]).value_counts()
    nc = labels(c["created_at"]).value_counts()
    out = pd.concat({"new_accounts": na, "new_contacts": nc}, axis=1).fillna(0).astype("int64")
    out = out.rename_axis("period").reset_index()
    if len(out):
        starts = {p: parse_period(p, crm.playbook).start for p in out["period"]}
        out = out.assign(_s=out["period"].map(starts)).sort_values("_s").drop(columns="_s")
    out["period"] = out["period"].astype("string")
    return out.reset_index(drop=True)[["period", "new_accounts", "new_contacts"]]
