"""Decompression bombs: oversized images and frames are refused from their headers, before any
decoding, with little memory; image sizes are read from PNG, JPEG, WebP and BMP headers."""

import io
import struct
import subprocess
import sys
import time
import zlib
from fractions import Fraction

import av
import pytest
from conftest import write_image

from streamvlm.errors import VideoError
from streamvlm.video import open_source
from streamvlm.video.imagesize import image_size

BOMB = 16000  # a 16000x16000 RGB frame takes 768 MB once decoded
LIMIT = 4096 * 4096  # the default max_pixels
MAX_RSS_MB = 500


def black_png(width: int, height: int) -> bytes:
    """A black RGB PNG written by hand: deflate output of identical blocks of zero rows (each
    block ends with a full flush, so they are byte-identical and can be repeated)."""
    row = bytes(1 + 3 * width)  # filter byte, then the pixels
    rows_per_block = max(1, (1 << 20) // len(row))
    blocks, rest = divmod(height, rows_per_block)
    if blocks < 2:
        idat = zlib.compress(row * height)
    else:
        deflate = zlib.compressobj(9)
        first = deflate.compress(row * rows_per_block) + deflate.flush(zlib.Z_FULL_FLUSH)
        block = deflate.compress(row * rows_per_block) + deflate.flush(zlib.Z_FULL_FLUSH)
        last = deflate.compress(row * rest) + deflate.flush()
        adler = ((len(row) * height % 65521) << 16) | 1  # Adler-32 of that many zero bytes
        idat = first + block * (blocks - 1) + last[:-4] + struct.pack(">I", adler)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def png_in_mov(path, png: bytes, width: int, height: int):
    """A .mov whose video stream (codec png, header size width x height) holds one packet."""
    with av.open(str(path), "w", format="mov") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        packet = av.Packet(png)
        packet.stream, packet.pts, packet.dts, packet.time_base = stream, 0, 0, Fraction(1, 1)
        container.mux(packet)
    return path


_CHILD = """
import sys
from streamvlm.errors import VideoError
from streamvlm.video import open_source
try:
    with open_source(sys.argv[1], fps=1) as src:
        list(src)
    print("opened")
except VideoError as error:
    print(error)
# VmHWM: the peak of this process's own memory (ru_maxrss would include the parent's at fork time)
print([int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0] / 1024)
"""


def open_in_child(path) -> tuple[str, float]:
    """Reads ``path`` with open_source in a fresh interpreter: (the one-line VideoError message
    or "opened", peak resident memory of that process in MB)."""
    result = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    message, rss = result.stdout.splitlines()
    return message, float(rss)


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    data = black_png(BOMB, BOMB)
    assert len(data) < 1_000_000
    return data


def test_hand_written_png_is_valid():
    data = black_png(40, 30)
    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (40, 30) and not frame.to_ndarray().any()
    big = black_png(300, 2000)  # the repeated-block path: zlib checks the Adler-32 written by hand
    assert zlib.decompress(big[41:-16]) == bytes(2000 * 901)


def test_png_bomb_in_image_folder_refused_from_its_header(tmp_path, bomb_png):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "000.png").write_bytes(bomb_png)
    message, rss = open_in_child(folder)
    assert message == (f"{folder}: image 000.png of {BOMB}x{BOMB} exceeds the limit of "
                       f"{LIMIT} pixels")
    assert rss < MAX_RSS_MB


def test_png_bomb_in_mov_refused_before_decoding(tmp_path, bomb_png):
    path = png_in_mov(tmp_path / "bomb.mov", bomb_png, BOMB, BOMB)
    message, rss = open_in_child(path)
    assert message == f"{path}: resolution {BOMB}x{BOMB} exceeds the limit of {LIMIT} pixels"
    assert rss < MAX_RSS_MB


def test_frame_larger_than_its_container_header_is_refused_by_the_decoder(tmp_path, bomb_png):
    path = png_in_mov(tmp_path / "lying.mov", bomb_png, 64, 48)  # the header says 64x48
    message, rss = open_in_child(path)
    assert message == f"{path}: no decodable video frames"
    assert rss < MAX_RSS_MB


def test_frame_over_the_limit_but_under_the_guard_gets_the_precise_error(tmp_path):
    path = png_in_mov(tmp_path / "lying.mov", black_png(64, 48), 16, 8)
    with pytest.raises(VideoError, match="frame of 64x48 exceeds the limit of 1000 pixels"):
        list(open_source(path, fps=1, max_pixels=1000))


def _write_all(tmp_path):
    """Real images of 50x30 in every format the header reader knows."""
    images = {
        "a.png": write_image(tmp_path / "a.png", 90, (30, 50)),
        "b.jpg": write_image(tmp_path / "b.jpg", 90, (30, 50)),
        "c.bmp": write_image(tmp_path / "c.bmp", 90, (30, 50)),
        "d.webp": write_image(tmp_path / "d.webp", 90, (30, 50)),  # lossy: VP8
        "e.webp": write_image(tmp_path / "e.webp", 90, (30, 50), pix_fmt="bgra",
                              options={"lossless": "1"}),  # VP8L
    }
    assert images["d.webp"].read_bytes()[12:16] == b"VP8 "
    assert images["e.webp"].read_bytes()[12:16] == b"VP8L"
    return images


def _vp8x(width: int, height: int, vp8: bytes) -> bytes:
    """An extended WebP (VP8X chunk declaring the canvas) around the chunks of ``vp8``."""
    ext = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (width - 1).to_bytes(3, "little") + \
        (height - 1).to_bytes(3, "little")
    body = b"WEBP" + ext + vp8[12:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_image_size_reads_every_known_header(tmp_path):
    images = _write_all(tmp_path)
    for name, path in images.items():
        assert image_size(str(path)) == (50, 30), name
    jpeg = images["b.jpg"].read_bytes()
    # APP1 and COM segments and fill bytes before the frame header are skipped.
    padded = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", 60002) + bytes(60000) + \
        b"\xff\xfe\x00\x05abc" + b"\xff\xff" + jpeg[2:]
    (tmp_path / "padded.jpg").write_bytes(padded)
    assert image_size(str(tmp_path / "padded.jpg")) == (50, 30)
    (tmp_path / "x.webp").write_bytes(_vp8x(50, 30, images["d.webp"].read_bytes()))
    assert image_size(str(tmp_path / "x.webp")) == (50, 30)
    bmp = bytearray(images["c.bmp"].read_bytes())
    bmp[22:26] = struct.pack("<i", -30)  # top-down rows
    (tmp_path / "top_down.bmp").write_bytes(bmp)
    assert image_size(str(tmp_path / "top_down.bmp")) == (50, 30)
    core = b"BM" + bytes(12) + struct.pack("<IHHHH", 12, 50, 30, 1, 24)  # OS/2 header
    (tmp_path / "core.bmp").write_bytes(core)
    assert image_size(str(tmp_path / "core.bmp")) == (50, 30)


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\xff\xd8\xff\xd9",
                                  b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"GIF89a" + bytes(40),
                                  b"BM" + bytes(30), b"not an image at all, just text"])
def test_image_size_unknown_or_cut_headers(tmp_path, data):
    (tmp_path / "x").write_bytes(data)
    assert image_size(str(tmp_path / "x")) is None


def _patched(images, name: str) -> bytes:
    """The image ``name`` with its header changed to claim BOMB x BOMB."""
    data = bytearray(images[name].read_bytes())
    if name == "b.jpg":
        sof = data.index(b"\xff\xc0")
        data[sof + 5:sof + 9] = struct.pack(">HH", BOMB, BOMB)
    elif name == "c.bmp":
        data[18:26] = struct.pack("<ii", BOMB, BOMB)
    elif name == "d.webp":
        data[26:30] = struct.pack("<HH", BOMB, BOMB)
    elif name == "e.webp":
        bits = struct.unpack("<I", data[21:25])[0] & ~((1 << 28) - 1)
        data[21:25] = struct.pack("<I", bits | (BOMB - 1) | (BOMB - 1) << 14)
    elif name == "x.webp":
        return _vp8x(BOMB, BOMB, bytes(data))
    return bytes(data)


@pytest.mark.parametrize("name", ["b.jpg", "c.bmp", "d.webp", "e.webp", "x.webp"])
def test_image_header_claiming_a_huge_size_is_refused_before_decoding(tmp_path, name):
    images = _write_all(tmp_path)
    images["x.webp"] = images["d.webp"]
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / name).write_bytes(_patched(images, name))
    start = time.monotonic()
    with pytest.raises(VideoError) as info:
        open_source(folder, fps=1)
    assert str(info.value) == (f"{folder}: image {name} of {BOMB}x{BOMB} exceeds the limit of "
                               f"{LIMIT} pixels")
    assert time.monotonic() - start < 1.0


def test_image_of_an_unknown_format_is_checked_once_decoded(tmp_path):
    path = tmp_path / "a.png"  # a TIFF under a PNG name: the header reader does not know it
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("tiff", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "rgb24"
        for packet in stream.encode(av.VideoFrame(64, 48, "rgb24")):
            container.mux(packet)
    assert image_size(str(path)) is None
    assert next(open_source(tmp_path, fps=1)).image.shape == (48, 64, 3)
    with pytest.raises(VideoError, match="image a.png of 64x48 exceeds the limit of 1000 pixels"):
        open_source(tmp_path, fps=1, max_pixels=1000)
