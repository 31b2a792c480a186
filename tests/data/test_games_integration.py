"""The paper's Games data loads with exactly the published counts and targets."""

from __future__ import annotations

import numpy as np

from instructrec.data import leave_one_out
from instructrec.data.loaders.recbole_atomic import read_atomic


def test_games_counts(games):
    assert (games.n_users, games.n_items, games.n_interactions) == (50_546, 16_859, 440_264)


def test_games_targets_match_files(games, games_dir):
    split = leave_one_out(games)
    assert len(split) == 50_546
    row_of = {games.user_ids[u]: r for r, u in enumerate(split.users)}
    for name, targets in (("test", split.test_target), ("valid", split.valid_target)):
        names, rows = read_atomic(games_dir / f"Games-6k.{name}.inter")
        ui, ti = names.index("user_id"), names.index("item_id")
        got = np.array([games.item_ids[targets[row_of[f[ui]]]] for _, f in rows])
        _, rows = read_atomic(games_dir / f"Games-6k.{name}.inter")
        want = np.array([f[ti] for _, f in rows])
        assert (got == want).all()


def test_movielens_counts(movielens):
    assert (movielens.n_users, movielens.n_items, movielens.n_interactions) == (943, 1_682, 100_000)
    assert movielens.items.loc[0, "title"] == "Toy Story"
    assert "Animation" in movielens.items.loc[0, "categories"]
