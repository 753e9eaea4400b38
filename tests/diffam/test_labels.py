"""Label conventions: level names, VerSe ids, TotalSegmentator v2 ids."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from diffam.core.labels import (
    LEVEL_NAMES,
    TOTALSEGMENTATOR_TO_VERSE,
    VERSE_TO_TOTALSEGMENTATOR,
    level_name,
    segment_of,
    totalsegmentator_to_verse,
    verse_id,
    verse_to_totalsegmentator,
)


def test_verse_ids_match_method_md():
    assert [verse_id(f"C{n}") for n in range(1, 8)] == list(range(1, 8))
    assert [verse_id(f"T{n}") for n in range(1, 13)] == list(range(8, 20))
    assert [verse_id(f"L{n}") for n in range(1, 6)] == list(range(20, 25))
    assert verse_id("L6") == 25
    assert verse_id("sacrum") == 26
    assert verse_id("T13") == 28
    assert 27 not in LEVEL_NAMES


def test_names_round_trip_and_parsing():
    for vid, name in LEVEL_NAMES.items():
        assert verse_id(name) == vid
        assert level_name(vid) == name
    assert verse_id("l1") == 20
    assert verse_id(" t12 ") == 19
    assert verse_id("20") == 20
    assert verse_id(np.int64(5)) == 5
    assert verse_id("Sacrum") == 26


@pytest.mark.parametrize("bad", ["L7", "X1", "", 0, 27, 29, -1])
def test_unknown_levels_raise(bad):
    with pytest.raises(ValueError, match="VerSe|level"):
        verse_id(bad)


def test_segments():
    assert segment_of("C1") == segment_of(7) == "cervical"
    assert segment_of("T1") == segment_of("T12") == segment_of("T13") == "thoracic"
    assert segment_of("L1") == segment_of("L5") == segment_of("L6") == "lumbar"
    assert segment_of("sacrum") == "sacrum"


def test_totalsegmentator_table_matches_method_md():
    assert TOTALSEGMENTATOR_TO_VERSE[25] == 26  # sacrum
    assert TOTALSEGMENTATOR_TO_VERSE[26] == 26  # S1 merged into sacrum
    assert TOTALSEGMENTATOR_TO_VERSE[27] == verse_id("L5")
    assert TOTALSEGMENTATOR_TO_VERSE[31] == verse_id("L1")
    assert TOTALSEGMENTATOR_TO_VERSE[32] == verse_id("T12")
    assert TOTALSEGMENTATOR_TO_VERSE[43] == verse_id("T1")
    assert TOTALSEGMENTATOR_TO_VERSE[44] == verse_id("C7")
    assert TOTALSEGMENTATOR_TO_VERSE[50] == verse_id("C1")
    for vid, ts in VERSE_TO_TOTALSEGMENTATOR.items():
        assert TOTALSEGMENTATOR_TO_VERSE[ts] == vid


@pytest.mark.shared_data
def test_mapping_matches_structures_csv(shared_data):
    path = shared_data / "ct" / "chest_t1_l2" / "structures.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with path.open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["group"] == "vertebrae"]
    assert len(rows) == 26
    for row in rows:
        ts = int(row["id"])
        name = row["structure"]
        if name == "sacrum":
            expected = 26
        elif name == "vertebrae_S1":
            expected = 26
        else:
            expected = verse_id(name.removeprefix("vertebrae_"))
        assert TOTALSEGMENTATOR_TO_VERSE[ts] == expected, name


def test_relabel_arrays():
    ts = np.array([[0, 5, 25, 26], [27, 31, 32, 50]], dtype=np.uint8)
    verse = totalsegmentator_to_verse(ts)
    assert verse.dtype == np.uint8
    np.testing.assert_array_equal(verse, [[0, 0, 26, 26], [24, 20, 19, 1]])
    back = verse_to_totalsegmentator(verse)
    np.testing.assert_array_equal(back, [[0, 0, 25, 25], [27, 31, 32, 50]])


def test_relabel_unmapped_and_bad_values():
    with pytest.raises(ValueError, match="L6"):
        verse_to_totalsegmentator(np.array([0, 20, 25]))
    np.testing.assert_array_equal(
        verse_to_totalsegmentator(np.array([0, 20, 25, 28]), unmapped="drop"), [0, 31, 0, 0]
    )
    with pytest.raises(ValueError, match="negative"):
        totalsegmentator_to_verse(np.array([-1, 3]))
    with pytest.raises(ValueError, match="non-integer"):
        totalsegmentator_to_verse(np.array([0.5, 3.0]))
