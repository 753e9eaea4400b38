"""Integrity and geometry checks of image files, before and after SimpleITK reads them.

SimpleITK reads a truncated ``.nii.gz`` without complaint (the missing voxels
come back 0), reads a header-only NIfTI as zeros, takes a zero ``pixdim`` as
1 mm, and keeps a non-orthonormal direction matrix that the rest of diffam
(which assumes a rotation) would misplace by centimetres. These checks refuse
such files with a message naming the problem and the fix:

* :func:`check_file` (before reading): gzip stream complete (CRC and length),
  the voxel data as long as the header says (NIfTI, MetaImage, NRRD), NIfTI
  spacing > 0;
* :func:`check_geometry` (after reading): spacing > 0 and finite, direction
  matrix orthonormal.
"""

from __future__ import annotations

import gzip
import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from diffam.core.volume import ImageReadError

#: Largest deviation of DᵀD from the identity accepted as orthonormal.
ORTHONORMAL_TOLERANCE = 1e-3
_CHUNK = 1 << 22

# NIfTI datatype code -> bits per voxel (the header's bitpix is checked against it).
_NIFTI_BITS = {2: 8, 4: 16, 8: 32, 16: 32, 32: 64, 64: 64, 128: 24, 256: 8, 512: 16,
               768: 32, 1024: 64, 1280: 64, 1536: 128, 1792: 128, 2048: 256, 2304: 32}


def _refuse(path: Path, problem: str, fix: str) -> ImageReadError:
    return ImageReadError(f"{path}: {problem}; {fix}")


def _gunzipped_length(path: Path) -> int:
    """Length of the decompressed data; raises ImageReadError on a damaged or truncated stream."""
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while True:
                chunk = stream.read(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
    except (EOFError, OSError, zlib.error) as error:
        raise _refuse(path, f"the gzip data is damaged or truncated ({error})",
                      "the file was not copied or written completely: copy it again or "
                      "re-export it") from None
    return total


def _nifti_header(raw: bytes) -> dict | None:
    """Dimensions, bits per voxel, data offset and spacing of a NIfTI-1/2 header (None: not one)."""
    if len(raw) >= 348:
        for endian in "<>":
            if struct.unpack(endian + "i", raw[:4])[0] == 348:
                dim = struct.unpack(endian + "8h", raw[40:56])
                datatype, bitpix = struct.unpack(endian + "2h", raw[70:74])
                pixdim = struct.unpack(endian + "8f", raw[76:108])
                offset = struct.unpack(endian + "f", raw[108:112])[0]
                offset = int(offset) if math.isfinite(offset) and offset < 2**62 else 352
                return {"dim": dim, "datatype": datatype, "bitpix": bitpix,
                        "pixdim": pixdim, "offset": max(offset, 352)}
    if len(raw) >= 540:
        for endian in "<>":
            if struct.unpack(endian + "i", raw[:4])[0] == 540:
                datatype, bitpix = struct.unpack(endian + "2h", raw[12:16])
                dim = struct.unpack(endian + "8q", raw[16:80])
                pixdim = struct.unpack(endian + "8d", raw[104:168])
                offset = struct.unpack(endian + "q", raw[168:176])[0]
                return {"dim": dim, "datatype": datatype, "bitpix": bitpix,
                        "pixdim": pixdim, "offset": max(int(offset), 544)}
    return None


def _check_nifti(path: Path, compressed: bool) -> None:
    try:
        opener = gzip.open if compressed else open
        with opener(path, "rb") as stream:
            raw = stream.read(544)
    except gzip.BadGzipFile:
        return  # not gzip at all: the reader says it is not a readable image
    except (EOFError, OSError, zlib.error) as error:
        raise _refuse(path, f"cannot read the NIfTI header ({error})",
                      "copy or re-export the file") from None
    header = _nifti_header(raw)
    if header is None:
        return  # not a NIfTI header: the reader says it is not a readable image
    dim = header["dim"]
    ndim = dim[0]
    if not 1 <= ndim <= 7 or any(d < 1 for d in dim[1:ndim + 1]):
        raise _refuse(path, f"invalid NIfTI dimensions {list(dim[:ndim + 1])}",
                      "re-export the image")
    bits = header["bitpix"] if header["bitpix"] > 0 else _NIFTI_BITS.get(header["datatype"], 0)
    expected = header["offset"] + math.prod(dim[1:ndim + 1]) * bits // 8
    spacing = header["pixdim"][1:min(ndim, 3) + 1]
    bad = [round(float(s), 6) for s in spacing if not math.isfinite(s) or s <= 0]
    if bad:
        raise _refuse(path, f"voxel spacing (pixdim) {[round(float(s), 6) for s in spacing]} "
                      "is zero, negative or not a number (a reader would silently use 1 mm)",
                      "fix the header's voxel size (e.g. with nibabel: img.header.set_zooms) "
                      "or re-export the image")
    if compressed:
        length = _gunzipped_length(path)
    else:
        length = path.stat().st_size
    if length < expected:
        raise _refuse(path, f"truncated: the header announces {expected:,} bytes "
                      f"(size {list(dim[1:ndim + 1])}, {bits} bits per voxel) but the file "
                      f"holds {length:,}", "the file was not copied or written completely: "
                      "copy it again or re-export it")


def _text_header(path: Path, end: re.Pattern, limit: int = 1 << 16) -> tuple[dict, int] | None:
    """Key/value header of MetaImage or NRRD and its length in bytes (None: not found)."""
    with open(path, "rb") as stream:
        raw = stream.read(limit)
    fields, position = {}, 0
    for line in raw.split(b"\n")[:-1]:
        position += len(line) + 1
        text = line.decode("latin-1").strip()
        if end.match(text):
            if ":" in text or "=" in text:
                key, _, value = text.replace("=", ":", 1).partition(":")
                fields[key.strip().lower()] = value.strip()
            return fields, position
        key, sep, value = text.replace(":=", ":").replace("=", ":", 1).partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    return None


_META_BYTES = {"met_uchar": 1, "met_char": 1, "met_ushort": 2, "met_short": 2, "met_uint": 4,
               "met_int": 4, "met_float": 4, "met_ulong": 8, "met_long": 8, "met_double": 8}
_NRRD_BYTES = {"uchar": 1, "unsigned char": 1, "uint8": 1, "uint8_t": 1, "signed char": 1,
               "int8": 1, "int8_t": 1, "char": 1, "short": 2, "short int": 2, "int16": 2,
               "int16_t": 2, "signed short": 2, "ushort": 2, "unsigned short": 2, "uint16": 2,
               "uint16_t": 2, "int": 4, "int32": 4, "int32_t": 4, "signed int": 4, "uint": 4,
               "unsigned int": 4, "uint32": 4, "uint32_t": 4, "float": 4, "double": 8,
               "longlong": 8, "int64": 8, "int64_t": 8, "ulonglong": 8, "uint64": 8,
               "uint64_t": 8}


def _check_metaimage(path: Path) -> None:
    parsed = _text_header(path, re.compile(r"^ElementDataFile\s*=", re.I))
    if parsed is None:
        return
    fields, start = parsed
    if fields.get("elementdatafile", "").upper() != "LOCAL":
        return  # the data lie in another file (.mhd/.raw): ITK checks its length
    try:
        size = [int(v) for v in fields["dimsize"].split()]
        bytes_per = _META_BYTES[fields["elementtype"].lower()]
        channels = int(fields.get("elementnumberofchannels", "1"))
    except (KeyError, ValueError):
        return
    expected = math.prod(size) * bytes_per * channels
    available = path.stat().st_size - start
    compressed = fields.get("compresseddata", "false").lower() == "true"
    if compressed:
        with open(path, "rb") as stream:
            stream.seek(start)
            inflater, total = zlib.decompressobj(), 0
            try:
                while chunk := stream.read(_CHUNK):
                    total += len(inflater.decompress(chunk))
                total += len(inflater.flush())
            except zlib.error as error:
                raise _refuse(path, f"the compressed voxel data are damaged ({error})",
                              "copy the file again or re-export it") from None
        available = total
        complete = inflater.eof
    else:
        complete = True
    if available < expected or not complete:
        raise _refuse(path, f"truncated: the header announces {expected:,} bytes of voxels "
                      f"(DimSize {size}) but the file holds {available:,}",
                      "the file was not copied or written completely: copy it again or "
                      "re-export it")


def _check_nrrd(path: Path) -> None:
    with open(path, "rb") as stream:
        if not stream.read(4) == b"NRRD":
            return
    parsed = _text_header(path, re.compile(r"^$"))
    if parsed is None:
        return
    fields, start = parsed
    if "data file" in fields or "datafile" in fields:
        return  # detached data
    try:
        size = [int(v) for v in fields["sizes"].split()]
        bytes_per = _NRRD_BYTES[fields["type"].lower()]
    except (KeyError, ValueError):
        return
    expected = math.prod(size) * bytes_per
    encoding = fields.get("encoding", "raw").lower()
    if encoding in ("gzip", "gz"):
        with open(path, "rb") as stream:
            stream.seek(start)
            inflater, total = zlib.decompressobj(16 + zlib.MAX_WBITS), 0
            try:
                while chunk := stream.read(_CHUNK):
                    total += len(inflater.decompress(chunk))
            except zlib.error as error:
                raise _refuse(path, f"the gzip voxel data are damaged ({error})",
                              "copy the file again or re-export it") from None
        available, complete = total, inflater.eof
    elif encoding == "raw":
        available, complete = path.stat().st_size - start, True
    else:
        return
    if available < expected or not complete:
        raise _refuse(path, f"truncated: the header announces {expected:,} bytes of voxels "
                      f"(sizes {size}) but the file holds {available:,}",
                      "the file was not copied or written completely: copy it again or "
                      "re-export it")


def check_file(path: str | Path) -> None:
    """Refuse a truncated or damaged image file, or a NIfTI with zero spacing (see module doc)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        _check_nifti(path, compressed=True)
    elif name.endswith(".nii"):
        _check_nifti(path, compressed=False)
    elif name.endswith(".mha"):
        _check_metaimage(path)
    elif name.endswith(".nrrd"):
        _check_nrrd(path)
    elif name.endswith(".gz"):
        with open(path, "rb") as stream:
            if stream.read(2) == b"\x1f\x8b":
                _gunzipped_length(path)


def check_geometry(spacing, direction, where: str) -> None:
    """Refuse a spacing that is not positive, or a direction matrix that is not a rotation."""
    spacing = np.asarray(spacing, dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ImageReadError(
            f"{where}: voxel spacing {spacing.tolist()} is zero, negative or not a number; fix "
            "the header's voxel size (or re-export the image)")
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    error = float(np.abs(matrix.T @ matrix - np.eye(3)).max()) if np.all(
        np.isfinite(matrix)) else math.inf
    if error > ORTHONORMAL_TOLERANCE:
        raise ImageReadError(
            f"{where}: the direction matrix {np.round(matrix, 4).tolist()} is not orthonormal "
            f"(columns off by up to {error:.3g}; a sheared or scaled grid); diffam would "
            "misplace the labels. Resample the image onto an orthonormal grid (e.g. "
            "sitk.Resample onto a grid with an orthonormal direction) or fix its header")
