"""Colour and name tables for label maps, in the formats 3D Slicer and ITK-SNAP read.

Written beside ``labels.nii.gz`` so that levels show with their names and
colours when the label map is opened:

* ``labels.ctbl``: 3D Slicer colour table (``# Color table file`` header,
  then ``value name r g b a`` per line, 0-255); load it with the label map
  (Add Data) and pick it as the volume's colour node.
* ``labels_itksnap.txt``: ITK-SNAP label description file
  (``IDX -R- -G- -B- -A-- VIS MSH LABEL``); Segmentation > Import Label
  Descriptions.

The tables list every vertebra level of the label convention (VerSe ids or
TotalSegmentator v2 ids), not only the levels found, so that tables are the
same for every run and missing levels can be painted with the right name.
Adjacent levels always get clearly different colours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from diffam.core.atomic import atomic_path
from diffam.core.labels import LEVEL_NAMES, VERSE_TO_TOTALSEGMENTATOR

#: Well separated colours (Trubetskoy's 20 distinct colours, white dropped);
#: VerSe id ``v`` gets ``PALETTE[(v - 1) % len(PALETTE)]``, so neighbours differ.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
)

CONVENTIONS = ("verse", "totalsegmentator")


@dataclass(frozen=True)
class LabelEntry:
    """One label value of a label map: its value in the file, level name and colour."""

    value: int
    name: str
    verse_id: int
    rgb: tuple[int, int, int]


def level_color(verse: int) -> tuple[int, int, int]:
    """RGB 0-255 of a vertebra by VerSe id (the same in every table and QC picture)."""
    return PALETTE[(int(verse) - 1) % len(PALETTE)]


def label_entries(convention: str = "verse") -> list[LabelEntry]:
    """Every vertebra level of ``convention`` (``'verse'`` or ``'totalsegmentator'``), by value.

    VerSe: 1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6, 26 sacrum, 28 T13.
    TotalSegmentator v2: 25 sacrum, 27-50 L5-C1 (L6 and T13 have no class).
    """
    if convention == "verse":
        pairs = [(v, v) for v in sorted(LEVEL_NAMES)]
    elif convention == "totalsegmentator":
        pairs = sorted((ts, v) for v, ts in VERSE_TO_TOTALSEGMENTATOR.items())
    else:
        raise ValueError(f"label convention must be one of {CONVENTIONS}, got {convention!r}")
    return [LabelEntry(value, LEVEL_NAMES[v], v, level_color(v)) for value, v in pairs]


# ---------------------------------------------------------------------- 3D Slicer
def slicer_ctbl_text(entries: list[LabelEntry], title: str = "labels.ctbl") -> str:
    """Text of a Slicer discrete colour table (``.ctbl``), background 0 included."""
    lines = [f"# Color table file {title}", f"# {len(entries) + 1} values", "0 background 0 0 0 0"]
    for entry in entries:
        name = entry.name.replace(" ", "_")
        lines.append(f"{entry.value} {name} {entry.rgb[0]} {entry.rgb[1]} {entry.rgb[2]} 255")
    return "\n".join(lines) + "\n"


def write_slicer_ctbl(entries: list[LabelEntry], path: Path, *, overwrite: bool = False) -> Path:
    """Write a Slicer colour table atomically."""
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as temporary:
        temporary.write_text(slicer_ctbl_text(entries, path.name), encoding="utf-8")
    return path


def read_slicer_ctbl(path: Path) -> dict[int, tuple[str, tuple[int, int, int, int]]]:
    """Parse a Slicer ``.ctbl``: value -> (name, (r, g, b, a)).

    Raises:
        ValueError: not a Slicer discrete colour table, or a malformed line.
    """
    text = Path(path).read_text(encoding="utf-8")
    if not text.startswith("# Color table file"):
        raise ValueError(f"{path}: not a Slicer colour table (no '# Color table file' header)")
    table = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 6:
            raise ValueError(f"{path}:{number}: expected 'value name r g b a', got {line!r}")
        value, name, *rgba = fields
        table[int(value)] = (name, tuple(int(c) for c in rgba))
    return table


# ---------------------------------------------------------------------- ITK-SNAP
_ITKSNAP_HEADER = """\
################################################
# ITK-SnAP Label Description File
# File format:
# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL
# Fields:
#    IDX:   Zero-based index
#    -R-:   Red color component (0..255)
#    -G-:   Green color component (0..255)
#    -B-:   Blue color component (0..255)
#    -A-:   Label transparency (0.00 .. 1.00)
#    VIS:   Label visibility (0 or 1)
#    MSH:   Label mesh visibility (0 or 1)
#  LABEL:   Label description
################################################
"""


def itksnap_text(entries: list[LabelEntry]) -> str:
    """Text of an ITK-SNAP label description file, ``Clear Label`` 0 included."""
    rows = [(0, (0, 0, 0), 0.0, 0, 0, "Clear Label")]
    rows += [(e.value, e.rgb, 1.0, 1, 1, e.name) for e in entries]
    lines = [
        f'{value:5d} {r:5d} {g:4d} {b:4d} {alpha:8.2f} {vis:2d} {msh:2d}    "{name}"'
        for value, (r, g, b), alpha, vis, msh, name in rows
    ]
    return _ITKSNAP_HEADER + "\n".join(lines) + "\n"


def write_itksnap_labels(entries: list[LabelEntry], path: Path, *, overwrite: bool = False) -> Path:
    """Write an ITK-SNAP label description file atomically."""
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as temporary:
        temporary.write_text(itksnap_text(entries), encoding="utf-8")
    return path


_ITKSNAP_LINE = re.compile(
    r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([0-9.]+)\s+([01])\s+([01])\s+\"(.*)\"\s*$"
)


def read_itksnap_labels(path: Path) -> dict[int, tuple[str, tuple[int, int, int], float, bool]]:
    """Parse an ITK-SNAP label description file: value -> (name, rgb, alpha, visible).

    Raises:
        ValueError: a line that is neither a comment nor a label description.
    """
    table = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ITKSNAP_LINE.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: not an ITK-SNAP label line: {line!r}")
        value, r, g, b, alpha, vis, _msh, name = match.groups()
        table[int(value)] = (name, (int(r), int(g), int(b)), float(alpha), vis == "1")
    return table
