"""Writers for image files PIL cannot produce (16-bit colour PNG, 16-bit and float TIFF), for the decoding tests."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def write_png16(path: Path, array: np.ndarray) -> Path:
    """A 16-bit PNG: HxW gray, HxWx2 gray+alpha, HxWx3 RGB or HxWx4 RGBA (no filtering, one IDAT chunk)."""
    arr = np.asarray(array).astype(">u2")
    if arr.ndim == 2:
        arr = arr[..., None]
    h, w, c = arr.shape
    color = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0))
    Path(path).write_bytes(png + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return Path(path)


def write_tiff(path: Path, array: np.ndarray, byteorder: str = "<") -> Path:
    """An uncompressed single-strip TIFF of HxW or HxWxC (C = 3 or 4) uint8/uint16/int32/float32 samples."""
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[..., None]
    h, w, c = arr.shape
    bits, fmt = arr.dtype.itemsize * 8, {"u": 1, "i": 2, "f": 3}[arr.dtype.kind]
    data = arr.astype(arr.dtype.newbyteorder(byteorder)).tobytes()
    extra = b""
    offsets = {}
    if c > 1:
        offsets["bits"] = 8 + len(data) + len(extra)
        extra += struct.pack(byteorder + "H" * c, *([bits] * c))
        offsets["fmt"] = 8 + len(data) + len(extra)
        extra += struct.pack(byteorder + "H" * c, *([fmt] * c))
    tags = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, c, offsets.get("bits", bits)), (259, 3, 1, 1),
            (262, 3, 1, 2 if c >= 3 else 1), (273, 4, 1, 8), (277, 3, 1, c), (278, 4, 1, h), (279, 4, 1, len(data)),
            (284, 3, 1, 1), (339, 3, c, offsets.get("fmt", fmt))]
    if c == 4:
        tags.append((338, 3, 1, 2))  # the fourth sample is unassociated alpha
    ifd = struct.pack(byteorder + "H", len(tags))
    for tag, kind, count, value in sorted(tags):
        if kind == 3 and count == 1:
            ifd += struct.pack(byteorder + "HHIHH", tag, kind, count, value, 0)
        else:
            ifd += struct.pack(byteorder + "HHII", tag, kind, count, value)
    ifd += struct.pack(byteorder + "I", 0)
    header = (b"II" if byteorder == "<" else b"MM") + struct.pack(byteorder + "HI", 42, 8 + len(data) + len(extra))
    Path(path).write_bytes(header + data + extra + ifd)
    return Path(path)
