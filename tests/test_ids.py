"""Ids the engine makes up for new instances."""

from __future__ import annotations

import re
import time

from procflow.ids import new_id


def test_an_id_is_20_letters_and_digits() -> None:
    assert re.fullmatch(r"[0-9A-Za-z]{20}", new_id())


def test_ids_made_in_a_later_millisecond_sort_after_earlier_ones() -> None:
    earlier = [new_id() for _ in range(100)]
    time.sleep(0.002)
    later = new_id()
    assert all(id < later for id in earlier)


def test_ids_are_unique() -> None:
    ids = [new_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
