"""Image dimensions read from the file header (PNG, JPEG, WebP, BMP), without decoding, so that
an oversized image is refused before a decoder allocates it. Recognizes the format by content,
not by the file name."""

from __future__ import annotations

import struct
from typing import BinaryIO

# JPEG start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI.
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD9)])
# Segments read before giving up on finding the frame header.
_JPEG_MAX_SEGMENTS = 1024


def image_codec(head: bytes) -> str | None:
    """FFmpeg's decoder for PNG, JPEG or WebP bytes, from their first 12 bytes: "png",
    "mjpeg" or "webp"; None for anything else."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8"):
        return "mjpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def image_size(path: str) -> tuple[int, int] | None:
    """(width, height) declared by the header of a PNG, JPEG, WebP or BMP file; None when the
    format is not one of these or the header is cut or malformed. OSError when unreadable."""
    with open(path, "rb") as file:
        head = file.read(32)
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
            return struct.unpack(">II", head[16:24])
        if head.startswith(b"\xff\xd8"):
            return jpeg_size(file)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
            return webp_size(head)
        if head[:2] == b"BM" and len(head) >= 26:
            return _bmp_size(head)
    return None


def jpeg_size(file: BinaryIO) -> tuple[int, int] | None:
    """Walks the marker segments after SOI up to the first frame header (SOFn)."""
    file.seek(2)
    for _ in range(_JPEG_MAX_SEGMENTS):
        if file.read(1) != b"\xff":
            return None
        marker = file.read(1)
        while marker == b"\xff":  # fill bytes
            marker = file.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in _JPEG_STANDALONE:
            continue
        if code in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        field = file.read(2)
        if len(field) < 2 or struct.unpack(">H", field)[0] < 2:
            return None
        length = struct.unpack(">H", field)[0]
        if code in _JPEG_SOF:
            sof = file.read(5)
            if len(sof) < 5:
                return None
            _, height, width = struct.unpack(">BHH", sof)
            return (width, height) if height else None  # height 0: defined later (DNL)
        file.seek(length - 2, 1)
    return None


def webp_size(head: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the first 30 bytes of a WebP file (VP8, VP8L or VP8X), else None."""
    chunk = head[12:16]
    if chunk == b"VP8 ":  # lossy: frame tag, start code, 14-bit sizes
        if head[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: signature byte, then 14-bit sizes minus one
        if head[20] != 0x2F:
            return None
        bits = struct.unpack("<I", head[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas sizes minus one
        return (int.from_bytes(head[24:27], "little") + 1,
                int.from_bytes(head[27:30], "little") + 1)
    return None


def _bmp_size(head: bytes) -> tuple[int, int] | None:
    header_size = struct.unpack("<I", head[14:18])[0]
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack("<HH", head[18:22])
    if header_size >= 16:  # BITMAPINFOHEADER and later; a negative height means top-down
        width, height = struct.unpack("<ii", head[18:26])
        return (width, abs(height)) if width > 0 else None
    return None
