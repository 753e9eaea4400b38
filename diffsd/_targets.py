"""Compile the shared geometry source for one target (CPU or CUDA).

The scalar functions of :mod:`diffsd.geometry` and :mod:`diffsd.traversal`
are plain Python. :func:`compile_module_functions` copies each of them with
its global names rebound to the already compiled siblings, then applies the
target's decorator, so one source serves ``numba.njit`` and
``numba.cuda.jit(device=True)`` alike.

Numba's on-disk cache checks only the file that holds a kernel, not the
files it inlines. Kernels here inline the shared geometry, so a cache locator
keyed on a digest of every source file of the package is registered: editing
``geometry.py`` invalidates the cached CPU kernels too. It stores the cache
in the first writable of: ``NUMBA_CACHE_DIR`` (Numba's own setting), the
package's ``__pycache__``, and the user's cache folder (``diffsd`` under
``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux), so a read-only install
(a system site-packages, a container image) still caches its kernels.
"""

from __future__ import annotations

import hashlib
import types
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _source_digest() -> str:
    digest = hashlib.sha1()
    for path in sorted(_PACKAGE_DIR.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


SOURCE_DIGEST = _source_digest()


def user_cache_dir() -> Path:
    """The user's cache folder for diffsd (``$XDG_CACHE_HOME/diffsd`` on Linux)."""
    from numba.misc.appdirs import AppDirs

    return Path(AppDirs(appname="diffsd", appauthor=False).user_cache_dir)


def kernel_cache_candidates(py_file: str, subpath: str) -> list[Path]:
    """Folders to cache the kernels of ``py_file`` in, in order of preference.

    Args:
        py_file: the source file of the kernels (in the package).
        subpath: a folder name unique to the package's location (Numba's
            ``get_suitable_cache_subpath``), so that two installs sharing a
            cache folder do not share entries.
    """
    from numba.core import config

    candidates = []
    if config.CACHE_DIR:
        candidates.append(Path(config.CACHE_DIR) / subpath)
    candidates.append(Path(py_file).resolve().parent / "__pycache__")
    candidates.append(user_cache_dir() / subpath)
    return candidates


def _register_cache_locator() -> None:
    # Private Numba API; if it moves, fall back to Numba's default locator
    # (correct for users, stale only for developers editing geometry.py).
    try:
        from numba.core import caching
    except ImportError:  # pragma: no cover
        return

    # The classes lost their leading underscore in Numba 0.59 or so; take
    # either spelling.
    base = getattr(caching, "InTreeCacheLocator", None) or getattr(
        caching, "_InTreeCacheLocator", None)
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    if base is None or impl is None or not hasattr(impl, "_locator_classes"):
        return  # pragma: no cover

    class _PackageDigestLocator(base):
        def __init__(self, py_func, py_file, cache_path):
            super().__init__(py_func, py_file)
            self._cache_path = str(cache_path)

        def get_source_stamp(self):
            return SOURCE_DIGEST

        @classmethod
        def from_function(cls, py_func, py_file):
            if not Path(py_file).resolve().is_relative_to(_PACKAGE_DIR):
                return None
            for cache_path in kernel_cache_candidates(
                    py_file, cls.get_suitable_cache_subpath(py_file)):
                locator = cls(py_func, py_file, cache_path)
                try:
                    locator.ensure_cache_path()
                except OSError:
                    continue
                return locator
            return None

    if not any(c.__name__ == "_PackageDigestLocator" for c in impl._locator_classes):
        impl._locator_classes.insert(0, _PackageDigestLocator)


_register_cache_locator()


def compile_module_functions(modules, decorate) -> types.SimpleNamespace:
    """Compile every public function of ``modules`` with ``decorate``.

    Args:
        modules: Modules whose functions only call each other (in order of
            definition: a function may call those defined before it, in the
            same module or an earlier one).
        decorate: Target decorator, e.g. ``numba.njit(cache=True)``.

    Returns:
        A namespace with the compiled function under each original name.
    """
    namespace: dict = {}
    compiled = {}
    for module in modules:
        namespace.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    for module in modules:
        for name, function in vars(module).items():
            if not isinstance(function, types.FunctionType) or function.__module__ != module.__name__:
                continue
            if name.startswith("_"):
                continue
            rebound = types.FunctionType(
                function.__code__, namespace, function.__name__, function.__defaults__,
                function.__closure__,
            )
            rebound.__qualname__ = function.__qualname__
            rebound.__module__ = function.__module__
            rebound.__doc__ = function.__doc__
            namespace[name] = compiled[name] = decorate(rebound)
    return types.SimpleNamespace(**compiled)
