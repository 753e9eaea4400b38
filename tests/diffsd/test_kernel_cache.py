"""Numba's on-disk cache of the CPU kernels follows every source file of diffsd."""

from __future__ import annotations

from diffsd import _cpu_kernels
from diffsd._targets import SOURCE_DIGEST


def test_cached_kernels_are_keyed_on_the_package_sources():
    """Kernels inline geometry.py and traversal.py; Numba's own locator would
    check only the kernel file's timestamp and load a stale kernel after an
    edit of a constant there (it crashed with a changed tree layout)."""
    for dispatcher in (_cpu_kernels.query, _cpu_kernels.refit,
                       _cpu_kernels._shared.closest_leaf_query):
        locator = dispatcher._cache._impl._locator
        assert type(locator).__name__ == "_PackageDigestLocator"
        assert locator.get_source_stamp() == SOURCE_DIGEST
