"""Decompression bombs in the metadata of 8x8 images: a PNG zTXt/iTXt/iCCP chunk inflating to
1 GiB, and an EXIF block whose 2700 entries all point at one 32 KB value (FFmpeg copies it per
entry: about 900 MB from 64 KB) in PNG eXIf, JPEG APP1 and WebP EXIF. Each path that decodes images (server
frames, image folders, image codecs inside containers, the server, ``streamvlm narrate``) keeps
its peak memory within 100 MB of decoding a plain image, and decodes the pixels; PNG image data
that inflates past its declared size (seconds of CPU per MB) is refused.

Peak memory is the kernel's VmHWM of a child process (or of the server's process), reset through
/proc/self/clear_refs before each measured step. Bombs are built in milliseconds: a zlib stream
of zeros is one compressed 1 MiB block repeated (each ends with a full flush, so all are equal)."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamvlm.video.metadata import ImageDataError, strip_jpeg, strip_png, strip_webp
from tests.cli.conftest import cli, tiny_checkpoint  # noqa: F401 (fixtures)

GIB = 1 << 30
MAX_GROWTH_MB = 100
PIXEL = (16, 32, 48)
GRAY = 90  # the level of the JPEG/WebP bases

needs_clear_refs = pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK),
                                      reason="/proc/self/clear_refs is not writable: the peak "
                                             "memory of a step cannot be measured")


# ---- bomb builders -------------------------------------------------------------------------

def zlib_zeros(size: int) -> bytes:
    """A zlib stream of ``size`` zero bytes (a multiple of 1 MiB) in about size / 1000 bytes."""
    block_in = bytes(1 << 20)
    deflate = zlib.compressobj(9)
    first = deflate.compress(block_in) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(block_in) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush()[:-4]  # the final empty block; the Adler-32 is written for ``size``
    adler = ((size % 65521) << 16) | 1  # Adler-32 of that many zero bytes
    return first + block * (size // len(block_in) - 1) + end + struct.pack(">I", adler)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(*extra: bytes, idat: bytes | None = None) -> bytes:
    """An 8x8 RGB PNG of PIXEL with the chunks ``extra`` after IHDR."""
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    idat = zlib.compress((b"\0" + bytes(PIXEL) * 8) * 8) if idat is None else idat
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(extra) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def shared_value_exif(entries: int = 2700, value: int = 32000) -> bytes:
    """A big-endian TIFF (EXIF) block whose ``entries`` IFD entries (undefined bytes, tags
    0x1000...) all point at one ``value``-byte run: 64 KB by default, the size of a JPEG APP1."""
    data_at = 8 + 2 + 12 * entries + 4
    ifd = b"".join(struct.pack(">HHII", 0x1000 + i, 7, value, data_at) for i in range(entries))
    return b"MM\0\x2a" + struct.pack(">IH", 8, entries) + ifd + bytes(4) + b"A" * value


def encoded(codec: str, pix_fmt: str, level: int = GRAY, size: tuple[int, int] = (8, 8)) -> bytes:
    ctx = av.CodecContext.create(codec, "w")
    ctx.height, ctx.width = size
    ctx.pix_fmt = pix_fmt
    frame = av.VideoFrame.from_ndarray(np.full((*size, 3), level, np.uint8), format="rgb24")
    return b"".join(bytes(p) for p in ctx.encode(frame.reformat(format=pix_fmt)) + ctx.encode(None))


def jpeg(*segments: bytes, level: int = GRAY) -> bytes:
    """An 8x8 gray JPEG with ``segments`` (complete, marker included) right after SOI."""
    base = encoded("mjpeg", "yuvj420p", level)
    return base[:2] + b"".join(segments) + base[2:]


def segment(code: int, payload: bytes) -> bytes:
    return bytes((0xFF, code)) + struct.pack(">H", len(payload) + 2) + payload


def webp(*extra: bytes, flags: int = 0x08) -> bytes:
    """An 8x8 gray extended WebP (VP8X with ``flags``) with the chunks ``extra`` after VP8."""
    vp8 = encoded("libwebp", "yuv420p")[12:]
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes((flags, 0, 0, 0)) + (7).to_bytes(3, "little") * 2
    body = b"WEBP" + vp8x + vp8 + b"".join(extra)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def riff_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + b"\0" * (len(body) % 2)


def bombs() -> dict[str, bytes]:
    """Each metadata bomb, and the plain images they are built on."""
    zeros, exif = zlib_zeros(GIB), shared_value_exif()
    return {
        "png_plain": png(),
        "png_ztxt": png(chunk(b"zTXt", b"Comment\0\0" + zeros)),
        "png_itxt": png(chunk(b"iTXt", b"Comment\0\1\0\0\0" + zeros)),  # compressed iTXt
        "png_iccp": png(chunk(b"iCCP", b"icc\0\0" + zeros)),
        "png_exif": png(chunk(b"eXIf", exif)),
        "jpeg_plain": jpeg(),
        "jpeg_exif": jpeg(segment(0xE1, b"Exif\0\0" + exif)),
        "webp_plain": webp(flags=0),
        "webp_exif": webp(riff_chunk(b"EXIF", exif)),
    }


def pixel_bomb() -> bytes:
    """An 8x8 PNG whose image data inflates to 1 GiB (FFmpeg inflates all of it: seconds of CPU)."""
    return png(idat=zlib_zeros(GIB))


def chunk_kinds(data: bytes) -> list[bytes]:
    pos, kinds = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        kinds.append(kind)
        pos += 12 + length
    return kinds


def decode(codec: str, data: bytes) -> np.ndarray:
    ctx = av.CodecContext.create(codec, "r")
    return (ctx.decode(av.Packet(data)) + ctx.decode(None))[0].to_ndarray(format="rgb24")


def test_bomb_builders_are_what_they_claim():
    zeros = zlib_zeros(8 << 20)
    assert len(zeros) < 10_000 and zlib.decompress(zeros) == bytes(8 << 20)  # checksum included
    made = bombs()
    assert all(len(data) < 1_200_000 for data in made.values())
    exif = shared_value_exif()
    assert len(exif) < 65_000  # fits one JPEG APP1 segment
    assert decode("png", made["png_plain"])[0, 0].tolist() == list(PIXEL)


# ---- the strippers, as pure functions ------------------------------------------------------

def test_png_keeps_only_the_chunks_pixels_need():
    noisy = png(chunk(b"tEXt", b"a\0b"), chunk(b"zTXt", b"k\0\0" + zlib.compress(b"x" * 100)),
                chunk(b"iCCP", b"p\0\0" + zlib.compress(b"icc")), chunk(b"gAMA", bytes(4)),
                chunk(b"eXIf", shared_value_exif(3, 10)), chunk(b"pHYs", bytes(9)))
    clean = strip_png(noisy)
    assert chunk_kinds(clean) == [b"IHDR", b"IDAT", b"IEND"]
    assert clean == png() and strip_png(clean) == clean
    assert decode("png", clean)[0, 0].tolist() == list(PIXEL)


def test_png_structure_and_image_data_are_checked():
    good = png()
    with pytest.raises(ImageDataError, match="runs past the end"):
        strip_png(good[:40])
    with pytest.raises(ImageDataError, match="no PNG signature"):
        strip_png(b"\x8aMNG\r\n\x1a\n" + good[8:])  # FFmpeg reads MNG too: not walked, refused
    start = time.monotonic()
    with pytest.raises(ImageDataError, match="inflates past the 200 bytes its header gives"):
        strip_png(pixel_bomb())
    assert time.monotonic() - start < 1.0
    huge = png().replace(struct.pack(">II", 8, 8), struct.pack(">II", 16000, 16000), 1)
    with pytest.raises(ImageDataError, match="16000x16000 exceeds the limit of 1000 pixels"):
        strip_png(huge, max_pixels=1000)  # refused before its data is inflated
    assert strip_png(good + b"trailing bytes after IEND") == good


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


@pytest.mark.parametrize("height,width", [(1, 1), (3, 5), (9, 17), (37, 53)])
def test_interlaced_png_inflates_to_exactly_its_size(height, width):
    rgb = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    raw = b"".join(b"\0" + row.tobytes() for x, y, dx, dy in ADAM7 for row in rgb[y::dy, x::dx] if row.size)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)  # Adam7
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))
    assert (decode("png", strip_png(data)) == rgb).all()
    padded = zlib.compress(raw + bytes(70_000))  # more than the slack past the exact size
    with pytest.raises(ImageDataError, match=f"past the {len(raw)} bytes"):
        strip_png(data.replace(chunk(b"IDAT", zlib.compress(raw)), chunk(b"IDAT", padded)))


def test_jpeg_keeps_only_what_the_decoder_needs():
    jfif, adobe = segment(0xE0, b"JFIF\0\1\1\0\0\1\0\1\0\0"), segment(0xEE, b"Adobe\0\x64\0\0\0\0\1")
    noisy = jpeg(jfif, segment(0xE1, b"Exif\0\0" + shared_value_exif(3, 10)), segment(0xE2, b"ICC_PROFILE\0\1\1xx"),
                 segment(0xFE, b"a comment"), segment(0xED, b"Photoshop 3.0\0"), adobe)
    clean = strip_jpeg(noisy)
    assert b"Exif" not in clean and b"ICC_PROFILE" not in clean and b"comment" not in clean
    assert b"Adobe" in clean and b"JFIF" in clean  # read by FFmpeg to decode
    assert strip_jpeg(clean) == clean
    assert clean == strip_jpeg(jpeg(jfif, adobe))
    assert (decode("mjpeg", clean) == decode("mjpeg", jpeg(jfif, adobe))).all()


def test_jpeg_segments_found_where_ffmpeg_finds_them():
    exif = segment(0xE1, b"Exif\0\0" + shared_value_exif(3, 10))
    base = jpeg()
    after_scan = base[:-2] + exif + base[-2:]  # FFmpeg reads APPn between the scan and EOI too
    assert b"Exif" not in strip_jpeg(after_scan)
    dqt_at = base.index(b"\xff\xdb")
    length = struct.unpack(">H", base[dqt_at + 2:dqt_at + 4])[0]
    hidden = (base[:dqt_at + 2] + struct.pack(">H", length + len(exif)) + base[dqt_at + 4:dqt_at + 2 + length]
              + exif + base[dqt_at + 2 + length:])  # an APP1 inside bytes of a DQT FFmpeg does not read
    with pytest.raises(ImageDataError, match="FFDB .* does not match its content"):
        strip_jpeg(hidden)
    with pytest.raises(ImageDataError, match="runs past the end"):
        strip_jpeg(base[:dqt_at + 20])
    assert strip_jpeg(base + b"\xff\xe1\xff\xff trailing bytes") == strip_jpeg(base)
    two_fields = base + base  # an interlaced MJPEG packet: both fields are kept
    assert strip_jpeg(two_fields) == strip_jpeg(base) * 2


@pytest.mark.parametrize("kind", ["png", "jpeg", "webp"])
def test_walking_a_hostile_image_takes_milliseconds(kind):
    """8 MB of empty chunks or segments (one message at the server's default limit)."""
    many = {"png": png(chunk(b"tEXt", b"") * 700_000), "jpeg": jpeg(segment(0xFE, b"") * 2_000_000),
            "webp": webp(riff_chunk(b"XMP ", b"") * 1_000_000)}[kind]
    start = time.monotonic()
    with pytest.raises(ImageDataError, match="more than"):
        {"png": strip_png, "jpeg": strip_jpeg, "webp": strip_webp}[kind](many)
    scan = b"\xff\xd8" + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\xff\x00" * 4_000_000 + b"\xff\xd9"
    strip_jpeg(scan)  # entropy-coded data full of stuffed bytes
    assert time.monotonic() - start < 1.0


def test_webp_keeps_only_the_image_chunks():
    noisy = webp(riff_chunk(b"EXIF", shared_value_exif(3, 10)), riff_chunk(b"XMP ", b"<x/>"),
                 riff_chunk(b"ICCP", bytes(101)), flags=0x2C)
    clean = strip_webp(noisy)
    assert clean == webp(flags=0) and strip_webp(clean) == clean
    assert (decode("webp", clean) == decode("webp", webp(flags=0))).all()
    with pytest.raises(ImageDataError, match="runs past the end"):
        strip_webp(noisy[:4] + struct.pack("<I", len(noisy) - 8 - 40) + noisy[8:-40])
    with pytest.raises(ImageDataError, match="cut before the end"):
        strip_webp(noisy[:-10])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["png", "jpeg", "webp"]), cuts=st.lists(st.integers(0, 10_000), max_size=3),
       noise=st.binary(max_size=64))
def test_mangled_images_only_raise_image_data_errors(kind, cuts, noise):
    base = {"png": png(chunk(b"tEXt", b"a\0b")), "jpeg": jpeg(segment(0xFE, b"c")),
            "webp": webp(riff_chunk(b"XMP ", b"<x/>"))}[kind]
    strip = {"png": strip_png, "jpeg": strip_jpeg, "webp": strip_webp}[kind]
    data = bytearray(base)
    for cut in cuts:
        at = cut % (len(data) + 1)
        data[at:at + len(noise) // 2] = noise
    try:
        clean = strip(bytes(data))
    except ImageDataError:
        return
    assert strip(clean) == clean  # what is kept is walked the same way again
    if kind == "png":
        assert set(chunk_kinds(clean)) <= {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}


# ---- memory and time on every decoding path ------------------------------------------------

_PEAK = """
import json, sys, time

def status(key):
    return [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key)][0] / 1024

def measure(step, *args):
    open("/proc/self/clear_refs", "w").write("5")  # the peak restarts from the current RSS
    before, start = status("VmRSS:"), time.monotonic()
    result = step(*args)
    return {"result": result, "growth_mb": status("VmHWM:") - before, "seconds": time.monotonic() - start}
"""

_DECODE_CHILD = _PEAK + """
from pathlib import Path
from streamvlm.serve.images import ImageError, decode_image

def server_frame(path):
    try:
        return decode_image(Path(path).read_bytes(), max_pixels=4096 * 4096, max_side=None)[0, 0].tolist()
    except ImageError as error:
        return error.code

server_frame(sys.argv[1])  # warm-up: libraries loaded before anything is measured
print(json.dumps({Path(p).stem: measure(server_frame, p) for p in sys.argv[1:]}))
"""

_SOURCE_CHILD = _PEAK + """
from pathlib import Path
from streamvlm.errors import VideoError
from streamvlm.video import open_source

def frames(path):
    try:
        with open_source(path, fps=1000) as source:
            images = [frame.image[0, 0].tolist() for frame in source]
            return {"pixels": images, "skipped": source.stats.skipped_corrupt}
    except VideoError as error:
        return str(error)

frames(sys.argv[1])
print(json.dumps({Path(p).name: measure(frames, p) for p in sys.argv[1:]}))
"""


def run_child(script: str, *paths: Path) -> dict[str, dict]:
    result = subprocess.run([sys.executable, "-c", script, *map(str, paths)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def bomb_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    paths = {}
    for name, data in {**bombs(), "png_pixels": pixel_bomb()}.items():
        suffix = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}[name.split("_")[0]]
        paths[name] = folder / (name + suffix)
        paths[name].write_bytes(data)
    return paths


@needs_clear_refs
def test_server_frame_decoding_stays_small(bomb_files):
    report = run_child(_DECODE_CHILD, *bomb_files.values())
    for name, step in report.items():
        kind = name.split("_")[0]
        assert step["growth_mb"] < report[f"{kind}_plain"]["growth_mb"] + MAX_GROWTH_MB, (name, step)
        assert step["seconds"] < 2.0, (name, step)
        expected = "bad_frame" if name == "png_pixels" else list(PIXEL) if kind == "png" else [GRAY] * 3
        if kind == "webp":  # lossy: within a level or two
            assert max(abs(a - b) for a, b in zip(step["result"], expected)) <= 2, (name, step)
        else:
            assert step["result"] == expected, (name, step)


def apng_with(between: bytes, frames: int = 3) -> bytes:
    """An 8x8 APNG of ``frames`` frames with the chunks ``between`` before its second frame."""
    out = io.BytesIO()
    with av.open(out, "w", format="apng") as container:
        stream = container.add_stream("apng", rate=2)
        stream.width = stream.height = 8
        stream.pix_fmt = "rgb24"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((8, 8, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = out.getvalue()
    second = data.index(b"fcTL", data.index(b"fcTL") + 4) - 4
    return data[:second] + between + data[second:]


def muxed(path: Path, fmt: str, codec: str, packets: list[bytes], pix_fmt: str) -> Path:
    """A video of one stream of ``codec`` (8x8 in its header) holding ``packets`` at 2 fps."""
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=2)
        stream.width, stream.height, stream.pix_fmt = 8, 8, pix_fmt
        for i, data in enumerate(packets):
            packet = av.Packet(data)
            packet.stream, packet.pts, packet.dts = stream, i, i
            packet.time_base, packet.is_keyframe = Fraction(1, 2), True
            container.mux(packet)
    return path


@needs_clear_refs
def test_image_codecs_inside_containers_stay_small(tmp_path, bomb_files):
    made = {name: path.read_bytes() for name, path in bomb_files.items()}
    plain_png = png()
    videos = [
        muxed(tmp_path / "plain.mov", "mov", "png", [plain_png] * 3, "rgb24"),
        muxed(tmp_path / "png_text.mov", "mov", "png", [plain_png, made["png_ztxt"], made["png_iccp"]], "rgb24"),
        muxed(tmp_path / "mjpeg_exif.avi", "avi", "mjpeg", [made["jpeg_plain"], made["jpeg_exif"], made["jpeg_exif"]],
              "yuvj420p"),
        muxed(tmp_path / "png_pixels.mov", "mov", "png", [plain_png, made["png_pixels"], plain_png], "rgb24"),
    ]
    (tmp_path / "ztxt.apng").write_bytes(apng_with(chunk(b"zTXt", b"Comment\0\0" + zlib_zeros(GIB))))
    videos.append(tmp_path / "ztxt.apng")
    report = run_child(_SOURCE_CHILD, *videos)
    for name, step in report.items():
        assert step["growth_mb"] < report["plain.mov"]["growth_mb"] + MAX_GROWTH_MB, (name, step)
        assert step["seconds"] < 3.0, (name, step)
    assert report["png_text.mov"]["result"] == {"pixels": [list(PIXEL)] * 3, "skipped": 0}
    assert report["mjpeg_exif.avi"]["result"] == {"pixels": [[GRAY] * 3] * 3, "skipped": 0}
    assert report["png_pixels.mov"]["result"] == {"pixels": [list(PIXEL)] * 2, "skipped": 1}
    assert report["ztxt.apng"]["result"] == {"pixels": [[0] * 3, [40] * 3, [80] * 3], "skipped": 0}


def box(kind: bytes, payload: bytes, version: int | None = None) -> bytes:
    """An ISO BMFF box (a full box with ``version`` and zero flags when it is given)."""
    payload = payload if version is None else bytes((version, 0, 0, 0)) + payload
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def heif_items(data_at: int, exif: bytes) -> tuple[bytes, bytes]:
    """(a ``meta`` box declaring an av01 image item and an Exif item describing it, the items'
    bytes to be stored at ``data_at`` in the file)."""
    image = bytes(64)
    infe = [box(b"infe", struct.pack(">HH", i, 0) + kind + b"\0", 2) for i, kind in ((1, b"av01"), (2, b"Exif"))]
    iloc = box(b"iloc", bytes((0x44, 0)) + struct.pack(">H", 2) + struct.pack(">HHHII", 1, 0, 1, data_at, len(image))
               + struct.pack(">HHHII", 2, 0, 1, data_at + len(image), len(exif)), 0)
    meta = box(b"meta", box(b"hdlr", bytes(4) + b"pict" + bytes(13), 0) + box(b"pitm", struct.pack(">H", 1), 0)
               + box(b"iinf", struct.pack(">H", 2) + b"".join(infe), 0) + iloc
               + box(b"iref", box(b"cdsc", struct.pack(">HHH", 2, 1, 1)), 0)
               + box(b"iprp", box(b"ipco", box(b"ispe", struct.pack(">II", 64, 64), 0))
                     + box(b"ipma", struct.pack(">IHBB", 1, 1, 1, 1), 0)), 0)
    return meta, image + exif


def small_mp4() -> bytes:
    """Two 64x64 frames of gray 60, MPEG-4 in MP4 (moov written last)."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=2)
        stream.width = stream.height = 64
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 60, np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def mp4_with_exif_item(where: str) -> bytes:
    """small_mp4() whose ``meta`` box (at the top level, or inside ``moov``) declares a HEIF
    Exif item of 2700 entries sharing one 400 KB value (FFmpeg: about 1 GB at open)."""
    video = small_mp4()
    exif = bytes(4) + shared_value_exif(2700, 400_000)  # the Exif item: a TIFF header offset, then TIFF
    meta, _ = heif_items(0, exif)
    meta, items = heif_items(len(video) + len(meta) + 8, exif)
    if where == "moov":  # the muxer writes moov last: it grows by the meta box
        moov_at = video.rindex(b"moov") - 4
        assert moov_at + struct.unpack(">I", video[moov_at:moov_at + 4])[0] == len(video)
        video = video[:moov_at] + struct.pack(">I", len(video) - moov_at + len(meta)) + video[moov_at + 4:]
    return video + meta + box(b"free", items)


@needs_clear_refs
def test_heif_exif_item_is_refused_before_the_file_is_opened(tmp_path):
    (tmp_path / "top.mp4").write_bytes(mp4_with_exif_item("top"))
    (tmp_path / "moov.mp4").write_bytes(mp4_with_exif_item("moov"))
    (tmp_path / "plain.mp4").write_bytes(small_mp4())
    report = run_child(_SOURCE_CHILD, tmp_path / "plain.mp4", tmp_path / "top.mp4", tmp_path / "moov.mp4")
    assert report["plain.mp4"]["result"] == {"pixels": [[60, 60, 60]] * 2, "skipped": 0}
    for name in ("top.mp4", "moov.mp4"):
        assert report[name]["growth_mb"] < report["plain.mp4"]["growth_mb"] + MAX_GROWTH_MB, report[name]
        assert report[name]["result"] == (f"{tmp_path / name}: declares a HEIF EXIF item, which FFmpeg "
                                          "expands without a bound when opening the file; refused")


def test_apng_header_metadata_is_not_read(tmp_path):
    from streamvlm.video.decoding import BadFrameCounter, decode_frames, open_container, video_stream
    from streamvlm.video.frames import DecodeStats
    from streamvlm.video.locate import locate

    data = apng_with(b"")
    first = data.index(b"fcTL") - 4  # the stream header: read by the decoder for every stream
    text = chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"x" * 100_000))
    (tmp_path / "a.apng").write_bytes(data[:first] + text + data[first:])
    location = locate(tmp_path / "a.apng")
    container = open_container(location, 5.0)
    with container:
        stream, _ = video_stream(container, location, 4096 * 4096)
        assert b"zTXt" in stream.codec_context.extradata
        counter = BadFrameCounter("a", DecodeStats(), 0.5)
        frames = list(decode_frames(container, stream, counter, 4096 * 4096))
    assert len(frames) == 3 and all(not frame.metadata for frame in frames)


def peak_growth(step, *args, **kwargs) -> tuple[object, float, float]:
    """(step(*args, **kwargs), growth of this process's peak memory in MB, seconds)."""
    def status(key: str) -> float:
        return [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key)][0] / 1024

    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the peak restarts from the current RSS
    before, start = status("VmRSS:"), time.monotonic()
    result = step(*args, **kwargs)
    return result, status("VmHWM:") - before, time.monotonic() - start


@needs_clear_refs
def test_narrate_image_folder_of_bombs_decodes_the_pixels(cli, tmp_path, bomb_files, tiny_checkpoint):  # noqa: F811
    plain, bomb_folder = tmp_path / "plain", tmp_path / "bombs"
    plain.mkdir()
    bomb_folder.mkdir()
    for i, name in enumerate(["ztxt", "itxt", "iccp", "exif"]):
        (plain / f"{i}.png").write_bytes(bomb_files["png_plain"].read_bytes())
        (bomb_folder / f"{i}.png").write_bytes(bomb_files[f"png_{name}"].read_bytes())
    for i, kind in enumerate(["jpeg", "webp"], start=4):
        suffix = bomb_files[f"{kind}_plain"].suffix
        (plain / f"{i}{suffix}").write_bytes(bomb_files[f"{kind}_plain"].read_bytes())
        (bomb_folder / f"{i}{suffix}").write_bytes(bomb_files[f"{kind}_exif"].read_bytes())

    def narrate(folder: Path):
        return cli("narrate", folder, "--model", tiny_checkpoint, "--max-new-tokens", "2",
                   "--output", tmp_path / f"{folder.name}.jsonl")

    narrate(plain)  # the model and the decoders loaded once before anything is measured
    plain_run, plain_growth, plain_seconds = peak_growth(narrate, plain)
    bomb_run, bomb_growth, bomb_seconds = peak_growth(narrate, bomb_folder)
    assert plain_run.code == bomb_run.code == 0, bomb_run.err
    assert bomb_growth < plain_growth + MAX_GROWTH_MB, (bomb_growth, plain_growth)
    assert bomb_seconds < plain_seconds + 3.0
    # The same pixels: the same narration, metadata ignored.
    assert (tmp_path / "bombs.jsonl").read_text() == (tmp_path / "plain.jsonl").read_text()


def test_narrate_refuses_a_folder_whose_png_data_inflates_past_its_size(tmp_path, bomb_files, tiny_checkpoint):  # noqa: F811
    from tests.cli.conftest import run_subprocess

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        (folder / f"{i}.png").write_bytes(bomb_files["png_pixels"].read_bytes())
    result = run_subprocess("narrate", folder, "--model", tiny_checkpoint)
    assert result.code == 2
    assert result.err.strip() == f"streamvlm: error: {folder}: none of its 2 images can be decoded"
    assert result.seconds < 15


@needs_clear_refs
def test_server_bombs_leave_memory_and_other_sessions_alone(tiny_checkpoint, bomb_files):  # noqa: F811
    pytest.importorskip("websockets", reason="the serve extra is not installed")
    httpx = pytest.importorskip("httpx")
    from websockets.sync.client import connect

    from streamvlm.model.loading import ModelSource, load_model
    from streamvlm.serve.protocol import CloseCode, frame_message
    from tests.serve.conftest import _server
    from tests.serve.test_serve import read_all, small_png

    model = load_model(ModelSource(model=str(tiny_checkpoint), device="cpu"))
    frames = [bomb_files[name].read_bytes() for name in
              ["png_ztxt", "png_iccp", "png_exif", "jpeg_exif", "webp_exif", "png_pixels"]]
    with _server(model, max_message_bytes=2 * 2**20) as server:
        with connect(server.ws_url + "/v1/stream") as warm:  # the first frame loads the decoders
            warm.recv(timeout=10)
            warm.send(frame_message(0.0, small_png(8)))
            warm.send(json.dumps({"type": "end"}))
            read_all(warm)

        def two_sessions():
            with connect(server.ws_url + "/v1/stream") as bomber, connect(server.ws_url + "/v1/stream") as good:
                bomber.recv(timeout=10)
                good.recv(timeout=10)
                good.send(json.dumps({"type": "query", "time": 0, "text": "Hello?"}))
                for i, data in enumerate(frames):
                    bomber.send(frame_message(float(i), data))
                    good.send(frame_message(float(i), small_png(8)))
                bomber.send(json.dumps({"type": "end"}))
                good.send(json.dumps({"type": "end"}))
                return read_all(bomber), read_all(good)

        ((bomb_messages, bomb_code), (good_messages, good_code)), growth, _ = peak_growth(two_sessions)
        upload, upload_growth, _ = peak_growth(httpx.post, server.url + "/v1/narrate",
                                               content=mp4_with_exif_item("moov"), timeout=60)
    assert growth < MAX_GROWTH_MB, f"the server grew by {growth:.0f} MB"
    errors = [m for m in bomb_messages if m["type"] == "error"]
    assert [m["code"] for m in errors] == ["bad_frame"] and errors[0]["message"].startswith("frame at 5.000s")
    assert bomb_code == good_code == CloseCode.NORMAL
    assert any(m["type"] == "assistant" for m in good_messages)
    assert upload_growth < MAX_GROWTH_MB, f"the server grew by {upload_growth:.0f} MB on an upload"
    assert upload.status_code == 400 and upload.json()["code"] == "bad_video"
    assert "declares a HEIF EXIF item" in upload.json()["message"]
