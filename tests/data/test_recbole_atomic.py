"""RecBole atomic files (plain and sequential form) written by the test."""

from __future__ import annotations

import pytest

from instructrec.data.loaders.recbole_atomic import load_recbole
from instructrec.errors import DataError


def write_plain(folder, inter_rows, item_rows):
    folder.mkdir(exist_ok=True)
    (folder / "toy.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                      + "".join("\t".join(map(str, r)) + "\n" for r in inter_rows))
    (folder / "toy.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                                     + "".join("\t".join(map(str, r)) + "\n" for r in item_rows))
    return folder


def test_plain_form(tmp_path):
    folder = write_plain(tmp_path / "toy", [(1, "a", 5, 30), (1, "b", 3, 10), (2, "a", 4, 5), (1, "b", 1, 40)],
                         [("a", 'Say "Hi" &amp; go', 1999, "Drama Comedy"), ("b", "B movie", 2001, "")])
    ds = load_recbole(folder)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 2, 3)  # the repeated (1, b) collapses
    assert list(ds.item_ids[ds.sequences[0]]) == ["b", "a"]  # by time: b@10, a@30
    assert ds.titles[0] == 'Say "Hi" & go' and ds.items.loc[0, "categories"] == ["Drama", "Comedy"]
    assert ds.items.loc[0, "year"] == 1999
    assert ds.manifest.filters["dedup"] == "first (user, item)"


def test_sequential_form_and_valid_check(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    (folder / "s.item").write_text("item_id:token\ttitle:token_seq\n" + "".join(f"{i}\tT{i}\n" for i in range(6)))
    (folder / "s.test.inter").write_text("user_id:token\titem_id_list:token_seq\titem_id:token\n"
                                         "u1\t0 1 2 3\t4\nu2\t5 4\t3\n")
    (folder / "s.valid.inter").write_text("user_id:token\titem_id_list:token_seq\titem_id:token\n"
                                          "u1\t0 1 2\t3\nu2\t5\t4\n")
    ds = load_recbole(folder)
    assert [list(ds.item_ids[s]) for s in ds.sequences] == [["0", "1", "2", "3", "4"], ["5", "4", "3"]]
    (folder / "s.valid.inter").write_text("user_id:token\titem_id_list:token_seq\titem_id:token\nu2\t5\t3\n")
    with pytest.raises(DataError, match=r"s\.valid\.inter:2: .* the two files disagree"):
        load_recbole(folder)


def test_bad_atomic_files(tmp_path):
    folder = write_plain(tmp_path / "toy", [(1, "a", 5, 30)], [("a", "A", 1999, "")])
    with (folder / "toy.inter").open("a") as f:
        f.write("2\ta\t5\n")
    with pytest.raises(DataError, match=r"toy\.inter:3: expected 4 tab-separated fields"):
        load_recbole(folder)
    skipped = load_recbole(folder, on_error="skip")
    assert skipped.n_interactions == 1
    assert skipped.manifest.filters["lines"]["skipped_lines"] == {"toy.inter": 1}
    (folder / "toy.inter").write_bytes("user_id:token\titem_id:token\n1\tcaf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_recbole(folder)
    (folder / "toy.inter").write_text("")
    with pytest.raises(DataError, match="is empty"):
        load_recbole(folder)
    with pytest.raises(DataError, match="not a folder"):
        load_recbole(tmp_path / "absent")
