"""Numba's on-disk cache of the CPU kernels: keyed on every source file of
diffsd, and stored where the user can write (NUMBA_CACHE_DIR, the package,
or the user's cache folder)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import diffsd
from diffsd import _cpu_kernels
from diffsd._targets import SOURCE_DIGEST

# Prints where the small all_within kernel is cached, then compiles (or
# loads) and runs it, and prints whether it came from the cache.
_PROBE = """
import numpy as np
import diffsd
from diffsd import _cpu_kernels
kernel = _cpu_kernels.all_within
print(diffsd.__file__)
print(kernel._cache._impl._locator.get_cache_path())
kernel(np.zeros((2, 3)), 1.0)
print(sum(kernel.stats.cache_hits.values()))
"""


def _probe(env_update: dict, pythonpath: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(env_update, PYTHONPATH=str(pythonpath))
    # From another folder: ``python -c`` puts the working folder first on the path.
    return subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                          text=True, check=True, cwd=pythonpath.parent).stdout.split("\n")[:3]


def test_cached_kernels_are_keyed_on_the_package_sources():
    """Kernels inline geometry.py and traversal.py; Numba's own locator would
    check only the kernel file's content and load a stale kernel after an
    edit of a constant there (it crashed with a changed tree layout)."""
    for dispatcher in (_cpu_kernels.query, _cpu_kernels.refit,
                       _cpu_kernels._shared.closest_leaf_query):
        locator = dispatcher._cache._impl._locator
        assert type(locator).__name__ == "_PackageDigestLocator"
        assert locator.get_source_stamp() == SOURCE_DIGEST


def test_numba_cache_dir_is_honoured(tmp_path):
    package_parent = Path(diffsd.__file__).resolve().parents[1]
    module, cache_path, _ = _probe({"NUMBA_CACHE_DIR": str(tmp_path)}, package_parent)
    assert Path(module).resolve().parent == package_parent / "diffsd"
    assert Path(cache_path).parent == tmp_path
    _, _, hits = _probe({"NUMBA_CACHE_DIR": str(tmp_path)}, package_parent)
    assert int(hits) > 0


def test_read_only_package_caches_in_the_user_cache_folder(tmp_path):
    """A package folder where no __pycache__ can be written (here a file of
    that name, which stops root too) falls back to $XDG_CACHE_HOME/diffsd,
    and a second process loads the kernel from there."""
    site = tmp_path / "site"
    package = site / "diffsd"
    package.mkdir(parents=True)
    for source in Path(diffsd.__file__).resolve().parent.glob("*.py"):
        shutil.copy(source, package / source.name)
    (package / "__pycache__").write_text("not a folder")
    package.chmod(0o555)
    user_cache = tmp_path / "xdg"
    try:
        module, cache_path, hits = _probe({"XDG_CACHE_HOME": str(user_cache)}, site)
        assert Path(module).parent == package
        assert Path(cache_path).parent == user_cache / "diffsd"
        assert int(hits) == 0
        assert any(Path(cache_path).glob("_cpu_kernels.all_within-*.nbi"))
        _, _, hits = _probe({"XDG_CACHE_HOME": str(user_cache)}, site)
        assert int(hits) > 0
    finally:
        package.chmod(0o755)
