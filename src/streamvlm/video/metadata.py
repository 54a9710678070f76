"""Image bytes with their metadata removed before FFmpeg sees them (decompression bombs).

FFmpeg's image decoders read metadata no frame needs, and some of it is amplified (measured with
FFmpeg 8, PyAV 18): a PNG zTXt or iCCP chunk is inflated without a bound (1 MB -> 1 GiB of
memory, seconds of CPU); an EXIF block (JPEG APP1, WebP EXIF chunk, PNG eXIf) whose entries all
point at one shared value is copied once per entry and printed as text (a 64 KB block -> about
900 MB). So each image is rewritten, without inflating anything, to what the pixels need:

- PNG keeps IHDR, PLTE, tRNS, IDAT, IEND (and acTL, fcTL, fdAT for APNG); text, ICC, EXIF and
  colour chunks are dropped. The image data itself must inflate to no more than the size its
  header gives (FFmpeg inflates all of it, so 1 MB of IDAT can cost seconds of CPU).
- JPEG is rebuilt from SOI, EOI, DQT, DHT, SOFn, DRI and SOS segments (each exactly as long as
  its content, so no marker can hide in unread bytes) with their entropy-coded data, plus the
  first bytes of the APPn segments FFmpeg reads to decode (JFIF, AVI1, Adobe, LJIF, colr, xfrm).
  EXIF, XMP, ICC (APP2: not amplified, but not needed either), COM and the rest are dropped.
- WebP keeps VP8X (its ICC/EXIF/XMP flags cleared), VP8, VP8L and ALPH (FFmpeg decodes no
  animated WebP, so ANIM/ANMF go too).

A structure that cannot be walked (a chunk or segment running past the end) raises
:class:`ImageDataError`. CRCs are not checked (FFmpeg does not check them either).

One EXIF bomb is read before any decoder: FFmpeg's MP4/MOV demuxer parses the EXIF item of HEIF
image items (an ``infe`` box of type ``Exif``, anywhere in the box tree of an MP4, MOV, HEIC or
AVIF) while the file is opened, copying its value once per entry (a 430 KB box -> 1 GB). Files
declaring such an item are found by :func:`heif_exif_item` and refused."""

from __future__ import annotations

import itertools
import os
import re
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks the PNG decoder needs for pixels; APNG adds its frame control and frame data.
_PNG_PIXEL_CHUNKS = frozenset([b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"])
_APNG_CHUNKS = frozenset([b"acTL", b"fcTL", b"fdAT"])
# Channels per PNG colour type (grey, RGB, palette, grey+alpha, RGBA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7 passes: (x start, y start, x step, y step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
# Inflated bytes allowed past the size the header gives (some encoders add a little padding).
PNG_SLACK = 64 * 1024
_INFLATE_STEP = 1 << 20

_JPEG_SOI, _JPEG_EOI, _JPEG_SOS, _JPEG_DQT, _JPEG_DHT, _JPEG_DRI = 0xD8, 0xD9, 0xDA, 0xDB, 0xC4, 0xDD
# Frame headers (SOF0-15 but DHT, JPG, DAC; SOF55 is JPEG-LS) and APP0-15.
_JPEG_SOF = frozenset([*range(0xC0, 0xD0), 0xF7]) - {0xC4, 0xC8, 0xCC}
_JPEG_APP = range(0xE0, 0xF0)
# APPn payloads FFmpeg's mjpeg decoder reads to decode (all a few fixed fields). colr and xfrm
# are compared little-endian there, so they appear reversed in the file.
_JPEG_KEPT_APP = (b"JFIF", b"AVI1", b"Adob", b"LJIF", b"rloc", b"mrfx")
# An FF that starts a marker inside entropy-coded data (the last FF of a run of fill bytes).
_JPEG_SCAN_END = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")
# Markers walked per image before giving up: a few hundred at most in real files (255 ICC
# segments included); the cap bounds the time a hostile image full of empty segments costs.
JPEG_MAX_MARKERS = 4096
PNG_MAX_CHUNKS = 1 << 16  # 512 MB of image data in the 8 KB chunks libpng writes
WEBP_MAX_CHUNKS = 256

_WEBP_KEPT = frozenset([b"VP8X", b"VP8 ", b"VP8L", b"ALPH"])
_VP8X_METADATA_FLAGS = 0x20 | 0x08 | 0x04  # ICC, EXIF, XMP


class ImageDataError(ValueError):
    """Image bytes whose structure cannot be walked, or whose pixel data is larger than declared."""


def strip_png(data: bytes, *, animated: bool = False, ihdr: bytes | None = None,
              max_pixels: int | None = None) -> bytes:
    """``data`` with only the chunks the pixels need. ``data`` is a PNG file; when
    ``animated`` (the apng decoder), a run of chunks may come without the signature (APNG
    extradata and packets, whose header is ``ihdr``: the IHDR chunk's 13 bytes), and APNG's own
    chunks are kept. max_pixels: refuse a frame larger than this before inflating its data."""
    view = memoryview(data)  # chunks are joined once, not copied one by one
    out = []
    pos = 0
    if data.startswith(PNG_SIGNATURE):
        out.append(PNG_SIGNATURE)
        pos = len(PNG_SIGNATURE)
    elif not animated:  # FFmpeg's png decoder also reads MNG files, which are not walked here
        raise ImageDataError("not a PNG (no PNG signature)")
    kept = _PNG_PIXEL_CHUNKS | _APNG_CHUNKS if animated else _PNG_PIXEL_CHUNKS
    size = _png_frame_size(ihdr, max_pixels) if ihdr is not None else None
    pieces: list[bytes] = []
    for count in itertools.count():
        if pos >= len(data):
            break
        if count == PNG_MAX_CHUNKS:
            raise ImageDataError(f"PNG with more than {PNG_MAX_CHUNKS} chunks")
        if pos + 12 > len(data):
            raise ImageDataError(f"PNG chunk at byte {pos} runs past the end")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(data):
            raise ImageDataError(f"PNG chunk {kind.decode('latin-1')} at byte {pos} runs past the end")
        if kind in kept:
            out.append(view[pos:end])
            body = view[pos + 8:end - 4]
            if kind == b"IHDR":
                ihdr = body
                size = _png_frame_size(ihdr, max_pixels)
            elif kind == b"fcTL" and ihdr is not None and len(body) >= 12:
                _check_inflated(pieces, ihdr, size)
                pieces = []
                size = _png_frame_size(ihdr, max_pixels, body[4:12])
            elif kind == b"IDAT":
                pieces.append(body)
            elif kind == b"fdAT":
                pieces.append(body[4:])  # after its sequence number
            elif kind == b"IEND":
                pos = end
                break
        pos = end
    _check_inflated(pieces, ihdr, size)
    return b"".join(out)


def png_header(chunks: bytes) -> bytes | None:
    """The IHDR body of a PNG file or run of chunks (APNG extradata); None when absent."""
    pos = len(PNG_SIGNATURE) if chunks.startswith(PNG_SIGNATURE) else 0
    while pos + 12 <= len(chunks):
        length, kind = struct.unpack(">I4s", chunks[pos:pos + 8])
        if kind == b"IHDR":
            return chunks[pos + 8:pos + 8 + length]
        pos += 12 + length
    return None


def _png_frame_size(ihdr: bytes, max_pixels: int | None, dims: bytes | None = None) -> int | None:
    """Inflated size of one frame's image data (filter bytes included), from IHDR (and an fcTL's
    width and height); None when IHDR is not one the decoder reads (it then refuses the image)."""
    if len(ihdr) < 13:
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr[:13])
    if dims is not None:
        width, height = struct.unpack(">II", dims)
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDataError(f"PNG frame of {width}x{height} exceeds the limit of {max_pixels} pixels")
    if colour not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
        return None
    bits = depth * _PNG_CHANNELS[colour]

    def rows(w: int, h: int) -> int:
        return h * (1 + (w * bits + 7) // 8) if w and h else 0

    if not interlace:
        return rows(width, height)
    return sum(rows(-(-(width - x) // dx), -(-(height - y) // dy)) for x, y, dx, dy in _ADAM7)


def _check_inflated(pieces: list[bytes], ihdr: bytes | None, size: int | None) -> None:
    """Inflates the zlib stream split over ``pieces`` (output discarded) and refuses it when it
    gives more than ``size`` + PNG_SLACK bytes. A stream that is cut or damaged is left to the
    decoder, which reports it."""
    if not pieces or size is None:
        return
    limit = size + PNG_SLACK
    inflater = zlib.decompressobj()
    total = 0
    try:
        for piece in pieces:
            while piece and not inflater.eof:
                total += len(inflater.decompress(piece, _INFLATE_STEP))
                if total > limit:
                    raise ImageDataError(f"PNG image data inflates past the {size} bytes its "
                                         "header gives")
                piece = inflater.unconsumed_tail
    except zlib.error:
        return


def strip_jpeg(data: bytes) -> bytes:
    """``data`` (one JPEG, or the two fields of an interlaced MJPEG packet) rebuilt from the
    segments the pixels need, each exactly as long as its content: SOI, EOI, DQT, DHT, SOFn,
    DRI, SOS with its entropy-coded data, and the first 16 bytes of the APPn segments FFmpeg
    reads to decode. Markers are found as FFmpeg finds them (FF then C0-FE; other bytes between
    segments are skipped), and no kept segment has bytes FFmpeg would not consume, so FFmpeg
    meets no marker that was not checked here."""
    out = []
    pos, n = 0, len(data)
    seen_eoi = False
    for _ in range(JPEG_MAX_MARKERS):
        at = data.find(b"\xff", pos)
        if at < 0 or at + 1 >= n:
            break
        code = data[at + 1]
        pos = at + 1 if code == 0xFF else at + 2  # FF FF: fill byte
        if code == 0xFF or not 0xC0 <= code <= 0xFE or 0xD0 <= code <= 0xD7:
            continue  # not a marker to FFmpeg, or a restart marker outside a scan
        if code in (_JPEG_SOI, _JPEG_EOI):
            out.append(bytes((0xFF, code)))
            seen_eoi = seen_eoi or code == _JPEG_EOI
            continue
        length = struct.unpack(">H", data[pos:pos + 2])[0] if pos + 2 <= n else 0
        if length < 2 or pos + length > n:
            if seen_eoi:  # bytes after a complete image, which FFmpeg does not read
                break
            raise ImageDataError(f"JPEG segment FF{code:02X} at byte {at} runs past the end")
        payload = data[pos + 2:pos + length]
        pos += length
        segment = _jpeg_segment(code, payload, at)
        if segment is not None:
            out.append(b"\xff" + bytes((code,)) + struct.pack(">H", len(segment) + 2) + segment)
        if code == _JPEG_SOS:
            end = _jpeg_scan_end(data, pos)
            out.append(data[pos:end])
            pos = end
    else:
        raise ImageDataError(f"JPEG with more than {JPEG_MAX_MARKERS} markers")
    return b"".join(out)


def _jpeg_segment(code: int, payload: bytes, at: int) -> bytes | None:
    """The payload to keep for marker ``code`` (None: dropped); ImageDataError when a kept
    segment's length does not match its content."""
    if code in _JPEG_APP:
        return payload[:16] if payload.startswith(_JPEG_KEPT_APP) else None
    if code == _JPEG_DQT:
        pos = 0
        while pos < len(payload) and payload[pos] >> 4 <= 1:  # 8- or 16-bit tables
            pos += 1 + 64 * (1 + (payload[pos] >> 4))
        exact = pos == len(payload)
    elif code == _JPEG_DHT:
        pos = 0
        while pos + 17 <= len(payload):
            pos += 17 + sum(payload[pos + 1:pos + 17])
        exact = pos == len(payload)
    elif code in _JPEG_SOF:
        exact = len(payload) >= 6 and len(payload) == 6 + 3 * payload[5]
    elif code == _JPEG_SOS:
        exact = len(payload) >= 1 and len(payload) == 4 + 2 * payload[0]
    elif code == _JPEG_DRI:
        exact = len(payload) == 2
    else:  # COM, DAC, DNL, hierarchical and JPEG-LS extension segments
        return None
    if not exact:
        raise ImageDataError(f"JPEG segment FF{code:02X} at byte {at} has a length that does "
                             "not match its content")
    return payload


def _jpeg_scan_end(data: bytes, pos: int) -> int:
    """Where the entropy-coded data starting at ``pos`` ends: at the first marker other than a
    restart marker (FF D0-D7); FF 00 is a stuffed byte, FF FF a fill byte. So the data kept holds
    no byte pair FFmpeg could take for a segment."""
    found = _JPEG_SCAN_END.search(data, pos)
    return len(data) if found is None else found.start()


def strip_webp(data: bytes) -> bytes:
    """``data`` (a RIFF WebP) with only its VP8X (metadata flags cleared), VP8, VP8L and ALPH
    chunks; the RIFF size is rewritten."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ImageDataError("not a RIFF WebP")
    riff_end = 8 + struct.unpack("<I", data[4:8])[0]
    if riff_end > len(data):
        raise ImageDataError("WebP cut before the end its RIFF header gives")
    chunks = []
    pos = 12
    for count in itertools.count():
        if pos + 8 > riff_end:
            break
        if count == WEBP_MAX_CHUNKS:
            raise ImageDataError(f"WebP with more than {WEBP_MAX_CHUNKS} chunks")
        kind, length = struct.unpack("<4sI", data[pos:pos + 8])
        end = pos + 8 + length
        if end > riff_end:
            raise ImageDataError(f"WebP chunk {kind.decode('latin-1')} at byte {pos} runs past the end")
        if kind in _WEBP_KEPT:
            chunk = bytearray(data[pos:end] + (b"\0" if length % 2 else b""))
            if kind == b"VP8X" and length >= 1:
                chunk[8] &= ~_VP8X_METADATA_FLAGS & 0xFF
            chunks.append(bytes(chunk))
        pos = end + length % 2
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


# An ``infe`` box of version 2 (16-bit item id) or 3 (32-bit) declaring an item of type Exif:
# version, flags, item id, protection index, then the item type.
_HEIF_EXIF_ITEM = re.compile(rb"infe(?:\x02[\s\S]{7}|\x03[\s\S]{9})Exif")
# Box types an ISO BMFF file (MP4, MOV, HEIF) may begin with.
_ISO_FIRST_BOXES = frozenset([b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot",
                              b"uuid", b"meta", b"moof", b"sidx", b"junk", b"udta"])
_SCAN_WINDOW = 16 << 20


def heif_exif_item(path: str) -> bool:
    """Whether the file ``path``, read as ISO BMFF, declares a HEIF Exif item (see the module
    docstring). Every top-level box but ``mdat`` (media data, which FFmpeg does not parse) is
    searched for the declaring box, at any depth. False for files that are not ISO BMFF.
    OSError when the file cannot be read."""
    with open(path, "rb") as file:
        total = os.fstat(file.fileno()).st_size
        pos = 0
        while pos + 8 <= total:
            file.seek(pos)
            head = file.read(16)
            size, kind = struct.unpack(">I4s", head[:8])
            header = 8
            if size == 1 and len(head) == 16:
                size, header = struct.unpack(">Q", head[8:16])[0], 16
            elif size == 0:
                size = total - pos
            if pos == 0 and kind not in _ISO_FIRST_BOXES:
                return False
            end = total if size < header else min(pos + size, total)  # a broken size: the rest
            if kind != b"mdat" and _contains_exif_item(file, pos, end):
                return True
            pos = end
    return False


def _contains_exif_item(file, start: int, end: int) -> bool:
    """Whether bytes [start, end) of ``file`` hold an Exif item declaration (read in windows)."""
    overlap = 16  # longer than a match, so none is cut between two windows
    pos = start
    while pos < end:
        file.seek(pos)
        data = file.read(min(_SCAN_WINDOW, end - pos))
        if _HEIF_EXIF_ITEM.search(data):
            return True
        if not data or pos + len(data) >= end:
            return False
        pos += len(data) - overlap
    return False
