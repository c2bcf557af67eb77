"""Seen ids saved as chunks come back exactly: a head plus the chunks saved so far behaves like
the original, whatever the save points and rotations in between."""

from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from pipeline.engine import SeenChunk, SeenIds

ids = st.lists(st.sampled_from([f"id-{i}" for i in range(40)]), max_size=120)


@given(ids=ids, saves=st.sets(st.integers(0, 120)), later=ids, max_ids=st.integers(1, 12))
def test_a_head_and_its_chunks_behave_like_the_original(
    ids: list[str], saves: set[int], later: list[str], max_ids: int
) -> None:
    seen, stored = SeenIds(max_ids), []
    for n, event_id in enumerate(ids):
        seen.add(event_id)
        if n in saves:
            chunks = seen.unsaved()
            stored += chunks
            seen.saved(chunks)
    stored += seen.unsaved()  # the last commit
    again: SeenIds = pickle.loads(pickle.dumps(seen.head()))
    assert again.awaiting_chunks
    again.load(stored)
    assert (again.generation, len(again)) == (seen.generation, len(seen))
    assert [again.add(i) for i in later] == [seen.add(i) for i in later]


def test_chunks_of_other_generations_and_repeated_ids_are_harmless() -> None:
    seen = SeenIds(max_ids=4)
    for event_id in "abcde":
        seen.add(event_id)
    head = seen.head()
    head.load([*seen.unsaved(), *seen.unsaved(), SeenChunk(seen.generation - 2, 2, "a\x00b")])
    assert [head.add(i) for i in "abcde"] == [seen.add(i) for i in "abcde"]


def test_a_full_snapshot_from_before_chunks_restores_and_saves_all_its_ids_once() -> None:
    seen = SeenIds(max_ids=6)
    for event_id in "abcd":
        seen.add(event_id)
    restored: SeenIds = pickle.loads(pickle.dumps(seen))
    assert not restored.awaiting_chunks
    chunks = restored.unsaved()
    assert sorted(i for c in chunks for i in c.ids.split("\x00")) == list("abcd")
    restored.saved(chunks)
    assert restored.unsaved() == []
