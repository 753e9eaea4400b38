"""The localisation bench's report of the noise group over several noise draws.

One noise draw hid failures that name a whole crop one level off (loc9: the
noise group alone at seeds 2 and 3), so the bench reports each draw and the
pooled rate. The scoring is tested on made-up outcomes: no scan is read.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_localize.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_localize", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_localize", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _outcome(bench, scan: str, evaluated: int, identified: int, errors_mm: list[float]):
    case = bench.Case("noise", scan, "40 HU, 0.8 mm", None, None)
    return bench.Outcome(case, evaluated=list(range(evaluated)),
                         identified=list(range(identified)), errors_mm=errors_mm)


def test_each_noise_draw_and_the_pooled_rate_are_reported_with_the_worst_case(bench):
    by_seed = {
        0: [_outcome(bench, "verse008", 6, 6, [2.0, 3.0]), _outcome(bench, "verse005", 5, 5, [4.0])],
        3: [_outcome(bench, "verse008", 6, 0, [30.0]), _outcome(bench, "verse005", 5, 5, [5.0])],
    }
    rows = bench.seed_rows(by_seed)
    assert [r["seed"] for r in rows] == [0, 3, "pooled"]
    assert rows[0]["id_rate"] == pytest.approx(100.0)
    assert rows[1]["id_rate"] == pytest.approx(100.0 * 5 / 11)
    assert rows[1]["worst"] == "verse008 0/6"
    # Pooled over the vertebrae of every draw, not the mean of the draws' rates.
    assert rows[2]["vertebrae"] == 22 and rows[2]["identified"] == 16
    assert rows[2]["id_rate"] == pytest.approx(100.0 * 16 / 22)
    assert rows[2]["median_error_mm"] == pytest.approx(np.median([2.0, 3.0, 4.0, 30.0, 5.0]))


def test_noise_seeds_are_read_from_a_comma_separated_list(bench):
    assert bench._parse_seeds("0,1, 2,3") == [0, 1, 2, 3]
