"""Shared fixtures: the real data beside the checkout, and CUDA simulator checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# The CUDA kernels are tested under Numba's simulator on machines without a
# GPU; it must be enabled before numba.cuda is first imported.
if "NUMBA_ENABLE_CUDASIM" not in os.environ:
    try:
        import torch

        _has_gpu = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        _has_gpu = False
    if not _has_gpu:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

# CI runs the property tests on a fixed sequence of examples, so a submission
# passes or fails on its code, not on the draw; developers explore at random
# (and a failing example found then becomes an explicit @example).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

SHARED_DATA = Path(
    os.environ.get("DIFFAM_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data``; skips the test with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real data not found at {SHARED_DATA}: place the project's shared/ folder beside "
            "the checkout or set DIFFAM_SHARED_DATA"
        )
    return SHARED_DATA


@pytest.fixture
def two_threads():
    """Two Numba and two torch threads for tests that ask two runs to be byte-equal.

    A result that depends on the order in which threads add must show up there
    (it did: the backward of indexing with repeated indices); skipped where
    Numba was started with a single thread.
    """
    import numba
    import torch

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba runs on one thread here (NUMBA_NUM_THREADS=1): thread order cannot matter")
    numba_threads, torch_threads = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(2)
    torch.set_num_threads(2)
    yield
    numba.set_num_threads(numba_threads)
    torch.set_num_threads(torch_threads)
