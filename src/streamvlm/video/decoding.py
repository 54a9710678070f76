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
from streamvlm.video.imagesize import image_size
from streamvlm.video.locate import Location

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
    try:
        return av.open(location.target, format=fmt, timeout=timeout, metadata_errors="ignore",
                       container_options=PROBE_OPTIONS)
    except av.FFmpegError as error:
        raise VideoError(f"{location.name}: cannot open as video ({_reason(error)})") from None
    except OSError as error:
        raise VideoError(f"{location.name}: cannot open ({error.strerror or error})") from None


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


def decode_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                  counter: BadFrameCounter, should_stop: Callable[[], bool] = lambda: False
                  ) -> Iterator[av.VideoFrame]:
    """Good frames of ``stream`` in decoding order, packet by packet; a packet that fails to
    decode or a frame flagged corrupt is counted as bad and skipped. Stops at the end of the
    stream, after MAX_DEMUX_ERRORS_IN_ROW demuxer errors in a row, or when ``should_stop()``."""
    errors_in_row = 0
    while errors_in_row < MAX_DEMUX_ERRORS_IN_ROW:
        try:
            for packet in container.demux(stream):
                errors_in_row = 0
                if should_stop():
                    return
                try:
                    frames = packet.decode()
                except av.FFmpegError:
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


def read_image(path: str, image: str, name: str, max_pixels: int
               ) -> tuple[av.VideoFrame, str] | None:
    """Decodes the image file ``path`` (png/jpg/bmp/webp; ``image``: its name in the folder
    ``name``) with PyAV: (frame, codec name), or None when the file is broken or unreadable.
    VideoError when it exceeds ``max_pixels``: checked on the size in its header before it is
    opened (see ``imagesize``), and on the decoded frame for formats that check does not know.
    A playlist (which would read other files) counts as broken."""
    try:
        size = image_size(path)
    except OSError:
        return None
    if size is not None:
        _check_image(name, image, *size, max_pixels)
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
