"""Memory estimate of a run before any voxel is read (issue case 5).

The peak memory of a run grows with the scan's voxel count: the scan itself,
SimpleITK's copy, the label map on the input grid and, without centroids,
the whole-scan localisation (smoothed copies and masks in float32). Measured
peaks: a 512x512x133 CT without centroids about 2.1 GB, i.e. about
:data:`BYTES_PER_VOXEL_LOCALISE` bytes per voxel above the interpreter's
:data:`BASE_BYTES`. The estimate is compared with what the machine (or the
container's cgroup) has free, and a scan over it is refused with the estimate
and the ways to reduce it.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Python, torch, numba and the template, before any scan.
BASE_BYTES = 600 * 2**20
#: Peak bytes per input voxel with centroids given (scan, its copy, label map, crop).
BYTES_PER_VOXEL = 16
#: Peak bytes per input voxel when the vertebrae are localised in the whole scan.
BYTES_PER_VOXEL_LOCALISE = 48

GB = 2**30


class MemoryEstimateError(ValueError):
    """The run would need more memory than is available; says how much and what to do."""


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_bytes() -> int | None:
    """Memory this process may still use: MemAvailable, capped by the cgroup limit; None: unknown."""
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:
            room = max(0, limit - usage)
            free = room if free is None else min(free, room)
            break
    return free


def scan_voxels(scan: str | os.PathLike) -> tuple[tuple[int, ...], int] | None:
    """Size and bytes per voxel of a scan from its header alone; None when unknown."""
    import SimpleITK as sitk

    path = Path(scan)
    reader = sitk.ImageFileReader()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        if not files:
            return None
        reader.SetFileName(str(files[0]))
        count = len(files)
    else:
        reader.SetFileName(str(path))
        count = 1
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None  # read_image reports the problem
    size = tuple(int(s) for s in reader.GetSize())
    if path.is_dir():
        size = (*size[:2], count)
    bytes_per = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    nbytes = {"8-bit": 1, "16-bit": 2, "32-bit": 4, "64-bit": 8}
    per = next((v for k, v in nbytes.items() if k in bytes_per), 4)
    return size, per * max(1, reader.GetNumberOfComponents())


def estimate_bytes(size: tuple[int, ...], localise: bool) -> int:
    voxels = 1
    for s in size:
        voxels *= int(s)
    per_voxel = BYTES_PER_VOXEL_LOCALISE if localise else BYTES_PER_VOXEL
    return BASE_BYTES + voxels * per_voxel


def check_memory(scan: str | os.PathLike, localise: bool, limit_gb: float | None = None) -> None:
    """Refuse ``scan`` when its estimated peak exceeds the memory available (or ``limit_gb``)."""
    info = scan_voxels(scan)
    if info is None:
        return
    size, _ = info
    needed = estimate_bytes(size, localise)
    available = limit_gb * GB if limit_gb else available_bytes()
    if available is None or needed <= available:
        return
    shape = "x".join(str(s) for s in size)
    where = "the memory_limit_gb setting" if limit_gb else "available on this machine"
    fixes = ["crop the scan to the spine", "downsample it (e.g. to 1-1.5 mm voxels)"]
    if localise:
        with_centroids = estimate_bytes(size, localise=False)
        fixes.insert(0, f"give centroids= (skips the whole-scan localisation: about "
                        f"{with_centroids / GB:.1f} GB)")
    fixes.append("or, if the estimate is too cautious, memory_limit_gb=N or memory_check=false")
    raise MemoryEstimateError(
        f"{scan}: a {shape} scan needs about {needed / GB:.1f} GB "
        f"({'localisation in the whole scan' if localise else 'with centroids'}), more than the "
        f"{available / GB:.1f} GB {where}; " + ", ".join(fixes))
