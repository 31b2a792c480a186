"""Preprocessing of interaction frames: de-duplication and k-core filtering.

Both work on the long interaction frame (user_id, item_id, timestamp, rating) before a `Dataset`
is built, are deterministic, and record what they did in the returned filter description.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from instructrec.data.dataset import interaction_order

log = logging.getLogger(__name__)


def deduplicate(inter: pd.DataFrame) -> pd.DataFrame:
    """Keep each (user, item) pair once: its earliest interaction.

    Sequential recommendation models next-item choice, so a repeated review or re-rating of the
    same item is collapsed to the first time the user chose it (as in the paper's preprocessing).
    """
    if not len(inter):
        return inter.reset_index(drop=True)
    users = pd.factorize(inter["user_id"], sort=False)[0]
    items, item_uniques = pd.factorize(inter["item_id"], sort=False)
    order = interaction_order(inter, users)
    # One int64 key per row, in time order, so "first" is the earliest; hashing ints instead of
    # pairs of strings, and one take of every column instead of a sort and then a filter.
    key = users.astype(np.int64)[order] * max(len(item_uniques), 1) + items[order]
    repeated = pd.Series(key).duplicated(keep="first").to_numpy()
    rows = order[~repeated]
    if len(rows) < len(inter):
        log.info("de-duplication removed %d repeated (user, item) rows", len(inter) - len(rows))
    if np.array_equal(rows, np.arange(len(inter))):
        return inter.reset_index(drop=True)
    return inter.iloc[rows].reset_index(drop=True)


def k_core(inter: pd.DataFrame, min_user: int = 5, min_item: int = 5) -> pd.DataFrame:
    """Drop users with < `min_user` and items with < `min_item` interactions until nothing changes.

    Removing a user can push an item under its threshold and vice versa, so one pass is not
    enough; the loop ends at the fixed point where every remaining user and item meets both.
    """
    if min_user <= 1 and min_item <= 1:
        return inter.reset_index(drop=True)
    users = pd.factorize(inter["user_id"])[0]
    items = pd.factorize(inter["item_id"])[0]
    keep = np.ones(len(inter), dtype=bool)
    rounds = 0
    while True:
        rounds += 1
        u_counts = np.bincount(users[keep], minlength=users.max() + 1 if len(users) else 0)
        i_counts = np.bincount(items[keep], minlength=items.max() + 1 if len(items) else 0)
        new_keep = keep & (u_counts[users] >= min_user) & (i_counts[items] >= min_item)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    log.info("k-core(%d, %d): %d -> %d interactions in %d rounds", min_user, min_item, len(inter),
             int(keep.sum()), rounds)
    return inter[keep].reset_index(drop=True)
