"""PyAV plumbing: open a container with timeouts, read its video stream's header, decode
packet by packet while skipping and counting what is broken, convert frames to RGB arrays.

Damaged input: decoders are opened with ``err_detect=aggressive`` so that FFmpeg flags frames it
had to conceal (``frame.is_corrupt``) instead of passing them off as good; packets that raise and
flagged frames are skipped and counted in ``DecodeStats.skipped_corrupt``. Frames a decoder drops
silently cannot be told apart from packets that legitimately show nothing and are not counted.

Oversized input (decompression bombs): opening a container never decodes a frame. FFmpeg's stream
probing would otherwise decode one at full size before any header check; it is given a codec
whitelist that matches no decoder, so the stream size comes from the container and codec headers
only, and :func:`check_limits` refuses it before decoding. Our own decoders get FFmpeg's
``max_pixels`` option (see :func:`frame_guard`), so a frame far over the limit (one its header
understates, or of a stream whose header gives no size) is refused by the decoder before it is
allocated, and counted as damaged.

Metadata bombs: image codecs (png, apng, mjpeg, jpegls, webp), inside a container or as image
files, reach FFmpeg only through :mod:`streamvlm.video.metadata`, which removes the metadata
(text, ICC, EXIF) FFmpeg would inflate or multiply, and refuses PNG image data that inflates past
its declared size. Such a packet counts as damaged. A local file declaring a HEIF Exif item (which
FFmpeg's MP4/MOV demuxer expands while opening it) is refused before it is opened.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from streamvlm.errors import VideoError
from streamvlm.threads import decoder_threads
from streamvlm.video.frames import DecodeStats
from streamvlm.video.imagesize import image_codec, image_size
from streamvlm.video.locate import Location
from streamvlm.video.metadata import (
    ImageDataError,
    heif_exif_item,
    png_header,
    strip_jpeg,
    strip_png,
    strip_webp,
)

DECODER_OPTIONS = {"err_detect": "aggressive"}
# Format options for every av.open: no decoder may be opened while probing the streams, and a
# file name is taken literally (the image2 demuxer would read "%d" as a number of other files).
PROBE_OPTIONS = {"codec_whitelist": "none", "pattern_type": "none"}
# Demuxers that read further files named inside the input, which a data root cannot confine.
PLAYLIST_FORMATS = ("concat", "hls", "dash")
# Smallest frame_guard (pixels).
GUARD_FLOOR = 4096 * 4096
# Demuxer errors in a row (no packet between them) after which the rest of a file is unreadable.
MAX_DEMUX_ERRORS_IN_ROW = 8
# Bad frames are only judged against max_bad_ratio once this many frames were attempted.
MIN_ATTEMPTS_FOR_RATIO = 20
# Demuxers that read one still image (or text as "ANSI art"): not videos.
_STILL_FORMATS = ("image2", "tty")


@dataclass(frozen=True)
class StreamInfo:
    """Header facts of a video stream. width/height 0 when the header does not say;
    native_fps None when unknown or 0; duration None when unknown (live); start: the stream's
    first timestamp in seconds (the origin of frame times), None when unknown."""

    width: int
    height: int
    native_fps: float | None
    duration: float | None
    codec: str
    start: float | None


def open_container(location: Location, read_timeout: float) -> av.container.InputContainer:
    """Opens ``location`` for reading; webcams through v4l2, URLs with open/read timeouts."""
    fmt = "v4l2" if location.kind == "webcam" else None
    timeout = (read_timeout, read_timeout) if location.kind in ("url", "webcam") else None
    if location.kind == "file" and not location.live and _declares_heif_exif(location.target):
        raise VideoError(f"{location.name}: declares a HEIF EXIF item, which FFmpeg expands "
                         "without a bound when opening the file; refused")
    try:
        return av.open(location.target, format=fmt, timeout=timeout, metadata_errors="ignore",
                       container_options=PROBE_OPTIONS)
    except av.FFmpegError as error:
        raise VideoError(f"{location.name}: cannot open as video ({_reason(error)})") from None
    except OSError as error:
        raise VideoError(f"{location.name}: cannot open ({error.strerror or error})") from None


def _declares_heif_exif(path: str) -> bool:
    try:
        return heif_exif_item(path)
    except OSError:  # av.open reports it
        return False


def decoder_options(max_pixels: int) -> dict[str, str]:
    """DECODER_OPTIONS plus FFmpeg's ``max_pixels`` guard: frames larger than ``frame_guard``
    are refused by the decoder before they are allocated."""
    return {**DECODER_OPTIONS, "max_pixels": str(frame_guard(max_pixels))}


def frame_guard(max_pixels: int) -> int:
    """The pixel count past which FFmpeg refuses to decode a frame: twice the limit (FFmpeg
    counts rows padded to the SIMD alignment), at least 4096x4096 so that a frame somewhat over a
    small limit still decodes and gets the precise error, at most what FFmpeg accepts."""
    return min(max(2 * max_pixels, GUARD_FLOOR), 2**31 - 1)


def video_stream(container: av.container.InputContainer, location: Location, max_pixels: int
                 ) -> tuple[av.video.stream.VideoStream, StreamInfo]:
    """The first video stream of ``container`` and its header facts, its decoder set up with
    :func:`decoder_options`; VideoError when the container has none or holds a still image /
    text instead of a video. width/height are 0 when only decoding tells them (e.g. MPEG-4
    Part 2 in MP4)."""
    fmt = container.format.name
    if location.kind != "images" and (fmt.endswith("_pipe") or fmt in _STILL_FORMATS):
        raise VideoError(f"{location.name}: not a video (detected a still image or text, "
                         f"format '{fmt}')")
    if location.root is not None and location.kind == "file" and fmt in PLAYLIST_FORMATS:
        raise VideoError(f"{location.name}: {fmt} playlists are refused when a data root is set "
                         "(they read files from anywhere)")
    if not container.streams.video:
        raise VideoError(f"{location.name}: has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # e.g. a file cut before the codec parameters
        raise VideoError(f"{location.name}: video stream cannot be decoded (no decoder for it "
                         "or its codec parameters are missing)")
    stream.codec_context.options = decoder_options(max_pixels)
    stream.codec_context.thread_count = decoder_threads()  # FFmpeg's default is one thread per core
    rate = stream.average_rate or stream.guessed_rate
    native_fps = float(rate) if rate and math.isfinite(float(rate)) and rate > 0 else None
    duration = None
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    start = None
    if stream.start_time is not None and stream.time_base:
        start = float(stream.start_time * stream.time_base)
    ctx = stream.codec_context
    info = StreamInfo(width=ctx.width or 0, height=ctx.height or 0, native_fps=native_fps,
                      duration=duration if location.kind in ("file", "url") else None,
                      codec=ctx.name, start=start)
    return stream, info


def check_limits(name: str, info: StreamInfo, max_pixels: int, max_duration: float | None) -> None:
    """Refuses, before any decoding, a header whose size or length exceeds the limits."""
    if info.width * info.height > max_pixels:
        raise VideoError(f"{name}: resolution {info.width}x{info.height} exceeds the limit of "
                         f"{max_pixels} pixels")
    if max_duration is not None and info.duration is not None and info.duration > max_duration:
        raise VideoError(f"{name}: duration {info.duration:.1f} s exceeds the limit of "
                         f"{max_duration:g} s")


class BadFrameCounter:
    """Counts decoded and damaged frames into ``stats`` and raises VideoError once the share of
    damaged ones exceeds ``max_bad_ratio`` (judged after MIN_ATTEMPTS_FOR_RATIO attempts)."""

    def __init__(self, name: str, stats: DecodeStats, max_bad_ratio: float) -> None:
        self.name, self.stats, self.max_bad_ratio = name, stats, max_bad_ratio

    def good(self) -> None:
        self.stats.decoded += 1
        self._check()

    def bad(self) -> None:
        self.stats.skipped_corrupt += 1
        self._check()

    def _check(self) -> None:
        s = self.stats
        attempts = s.decoded + s.skipped_corrupt
        if attempts >= MIN_ATTEMPTS_FOR_RATIO and s.bad_ratio > self.max_bad_ratio:
            raise VideoError(f"{self.name}: too many damaged frames ({s.skipped_corrupt} of "
                             f"{attempts}, above max_bad_ratio={self.max_bad_ratio:g})")


def image_stripper(codec: str, max_pixels: int, extradata: bytes | None = None
                   ) -> Callable[[bytes], bytes] | None:
    """For the decoders of image codecs, bytes -> the same image without its metadata (see
    :mod:`streamvlm.video.metadata`; ImageDataError when it cannot be walked); None for other
    codecs. A PNG frame over ``frame_guard(max_pixels)`` is refused before its data is inflated.
    extradata: the APNG stream header (it gives the packets' IHDR)."""
    guard = frame_guard(max_pixels)
    if codec == "png":
        return lambda data: strip_png(data, max_pixels=guard)
    if codec == "apng":
        ihdr = png_header(extradata or b"")
        return lambda data: strip_png(data, animated=True, ihdr=ihdr, max_pixels=guard)
    if codec in ("mjpeg", "jpegls"):
        return strip_jpeg
    if codec == "webp":
        return strip_webp
    return None


def _stripped(packet: av.Packet, strip: Callable[[bytes], bytes]) -> av.Packet:
    """A packet holding ``strip(packet bytes)`` with the timing and key flag of ``packet``
    (and none of its side data: APNG repeats its header there, metadata included)."""
    clean = av.Packet(strip(bytes(packet)))
    clean.pts, clean.dts, clean.duration = packet.pts, packet.dts, packet.duration
    clean.time_base, clean.is_keyframe = packet.time_base, packet.is_keyframe
    return clean


def decode_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                  counter: BadFrameCounter, max_pixels: int,
                  should_stop: Callable[[], bool] = lambda: False) -> Iterator[av.VideoFrame]:
    """Good frames of ``stream`` in decoding order, packet by packet; a packet that fails to
    decode or a frame flagged corrupt is counted as bad and skipped. Packets of image codecs lose
    their metadata first (:func:`image_stripper`). Stops at the end of the stream, after
    MAX_DEMUX_ERRORS_IN_ROW demuxer errors in a row, or when ``should_stop()``."""
    ctx = stream.codec_context
    strip = image_stripper(ctx.name, max_pixels, ctx.extradata)
    if ctx.name == "apng" and ctx.extradata:
        try:  # the stream header (chunks before the first frame) is read by the decoder too
            ctx.extradata = strip_png(ctx.extradata, animated=True)
        except ImageDataError:
            ctx.extradata = b""  # every frame then fails, and is counted
    errors_in_row = 0
    while errors_in_row < MAX_DEMUX_ERRORS_IN_ROW:
        try:
            for packet in container.demux(stream):
                errors_in_row = 0
                if should_stop():
                    return
                try:
                    frames = stream.decode(_stripped(packet, strip) if strip and packet.size else packet)
                except (av.FFmpegError, ImageDataError):
                    counter.bad()
                    continue
                for frame in frames:
                    if frame.is_corrupt:
                        counter.bad()
                    else:
                        counter.good()
                        yield frame
            return
        except av.FFmpegError:  # the demuxer hit damaged container data; resume after it
            errors_in_row += 1
            counter.bad()


def decode_still(data: bytes, codec: str, max_pixels: int) -> av.VideoFrame | None:
    """The first frame of the image ``data`` (``codec``: png, mjpeg or webp, see
    ``imagesize.image_codec``), its metadata removed first (:func:`image_stripper`); None when
    it decodes to no frame. ImageDataError or av.FFmpegError when it is broken; frames larger
    than ``frame_guard(max_pixels)`` are refused before they are allocated."""
    strip = image_stripper(codec, max_pixels)
    clean = strip(data) if strip else data
    ctx = av.CodecContext.create(codec, "r")
    ctx.options = {"max_pixels": str(frame_guard(max_pixels))}
    frames = ctx.decode(av.Packet(clean)) + ctx.decode(None)
    return frames[0] if frames else None


def read_image(path: str, image: str, name: str, max_pixels: int
               ) -> tuple[av.VideoFrame, str] | None:
    """Decodes the image file ``path`` (``image``: its name in the folder ``name``): (frame,
    codec name), or None when the file is broken or unreadable. PNG, JPEG and WebP (recognised
    by content) are decoded with :func:`decode_still`, without their metadata; other formats
    (BMP, or any FFmpeg recognises) are opened with PyAV; a playlist (which would read other
    files) or a file declaring a HEIF Exif item counts as broken. VideoError when it exceeds
    ``max_pixels``: checked on the size in its header before it is decoded (see ``imagesize``),
    and on the decoded frame."""
    try:
        size = image_size(path)
        if size is not None:
            _check_image(name, image, *size, max_pixels)
        with open(path, "rb") as file:
            head = file.read(16)
            codec = image_codec(head)
            data = head + file.read() if codec else b""
    except OSError:
        return None
    if codec:
        try:
            frame = decode_still(data, codec, max_pixels)
        except (av.FFmpegError, ImageDataError):
            return None
        if frame is not None:
            _check_image(name, image, frame.width, frame.height, max_pixels)
        return None if frame is None else (frame, codec)
    if _declares_heif_exif(path):
        return None
    try:
        with av.open(path, metadata_errors="ignore", container_options=PROBE_OPTIONS) as container:
            if container.format.name in PLAYLIST_FORMATS or not container.streams.video:
                return None  # a playlist is not an image
            stream = container.streams.video[0]
            ctx = stream.codec_context
            if ctx is None:
                return None
            _check_image(name, image, ctx.width or 0, ctx.height or 0, max_pixels)
            ctx.options = {"max_pixels": str(frame_guard(max_pixels))}
            for frame in container.decode(stream):
                _check_image(name, image, frame.width, frame.height, max_pixels)
                return frame, ctx.name
            return None
    except av.FFmpegError:
        return None


def _check_image(name: str, image: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise VideoError(f"{name}: image {image} of {width}x{height} exceeds the limit of "
                         f"{max_pixels} pixels")


def to_rgb(frame: av.VideoFrame, max_side: int | None, reformatter: VideoReformatter) -> np.ndarray:
    """uint8 RGB [H, W, 3]; downscaled (aspect kept) so the long side is at most ``max_side``.
    One ``reformatter`` per source keeps FFmpeg's scaler context between frames (much faster)."""
    width, height = frame.width, frame.height
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    return reformatter.reformat(frame, width=width, height=height, format="rgb24").to_ndarray()


def _reason(error: av.FFmpegError) -> str:
    """FFmpeg's message without the errno and file name PyAV adds."""
    return error.strerror or str(error)
