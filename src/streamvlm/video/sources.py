"""Open any video source as an iterator of frames sampled at a target fps.

``open_source`` handles video files (any container/codec FFmpeg reads), webcams (``/dev/videoN``
or ``webcam:N``, through v4l2), network streams (rtsp/rtmp/http(s) URLs) and folders of images
(sorted by name; image i is at time i / fps). Every source is decoded with PyAV, lazily: only the
frame being emitted is held in memory, never the whole video.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from streamvlm.errors import ConfigError, VideoError
from streamvlm.video.decoding import (
    BadFrameCounter,
    StreamInfo,
    check_limits,
    decode_frames,
    open_container,
    read_image,
    to_rgb,
    video_stream,
)
from streamvlm.video.frames import DecodeStats, Frame
from streamvlm.video.live import LiveReader
from streamvlm.video.locate import Location, list_images, locate
from streamvlm.video.resize import FrameFit, FrameResizer
from streamvlm.video.sampling import TimestampSampler


@dataclass(frozen=True)
class _Options:
    fps: float
    max_side: int | None
    fit: FrameFit | None
    read_timeout: float
    max_pixels: int
    max_duration: float | None
    max_bad_ratio: float


class FrameSource(Iterator[Frame], AbstractContextManager):
    """Frames of one source sampled at ``fps``, in time order; see :func:`open_source`.

    name: what the user passed. kind: "file" | "webcam" | "url" | "images".
    width, height: native size (0 when the header does not say). native_fps: None when unknown
    or 0. duration: seconds, None when unknown (live). codec: decoder name. stats: counters.
    """

    def __init__(self, location: Location, info: StreamInfo, samples: Iterator[tuple[float, np.ndarray]],
                 stats: DecodeStats, *, realtime: bool, reader: LiveReader | None = None) -> None:
        self.name = location.name
        self.kind = location.kind
        self.width, self.height = info.width, info.height
        self.native_fps = info.native_fps
        self.duration = info.duration
        self.codec = info.codec
        self.stats = stats
        self._samples = samples
        self._reader = reader
        self._realtime = realtime and reader is None
        self._clock_start: float | None = None
        self._closed = False

    def __next__(self) -> Frame:
        if self._closed:
            raise StopIteration
        try:
            sample_time, image = next(self._samples)
        except BaseException:
            self.close()
            raise
        if self._realtime:
            now = time.monotonic()
            if self._clock_start is None:
                self._clock_start = now
            delay = self._clock_start + sample_time - now
            if delay > 0:
                time.sleep(delay)
        frame = Frame(time=sample_time, index=self.stats.sampled, image=image)
        self.stats.sampled += 1
        return frame

    def close(self) -> None:
        """Stops reading and releases the container (and the reader thread of live sources)."""
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            self._reader.stop()
        close = getattr(self._samples, "close", None)
        if close is not None:
            close()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def open_source(source: str | os.PathLike, *, fps: float, max_side: int | None = None,
                fit: FrameFit | None = None, allowed_root: str | os.PathLike | None = None,
                allow_urls: bool | None = None,
                read_timeout: float = 5.0, max_pixels: int = 4096 * 4096,
                max_duration: float | None = None, max_bad_ratio: float = 0.5,
                realtime: bool = False) -> FrameSource:
    """Opens ``source`` and returns its frames sampled at ``fps``: for each target time k / fps
    the first frame whose timestamp is at or after it (see ``sampling.TimestampSampler``).

    max_side: downscale (aspect kept) so the long side is at most this many pixels.
    fit: instead, scale every frame once to a model's input size (``FrameEncoder.fit``; see
        ``video.resize``): the frame encoder then does no resize of its own.
    allowed_root: local paths must resolve under this folder (for an image folder, every image
        too: one symlinked outside refuses the folder); URLs are then refused unless
        ``allow_urls=True`` (``allow_urls`` None means: allowed exactly when no root is set).
    read_timeout: seconds to wait for a live source to open and for each of its frames.
    max_pixels, max_duration: refuse sources whose header exceeds them, before decoding
        (and stop with VideoError if the frames themselves exceed them). Images are measured from
        their file header; a frame far over max_pixels (see ``decoding.frame_guard``) is refused
        by the decoder before it is allocated and counted as damaged.
    max_bad_ratio: VideoError once more than this share of frames is damaged (after 20 frames).
    realtime: for files and image folders, emit each frame no earlier than its time after the
        first one (wall clock), so a file plays like a live camera.
    Raises VideoError (one line naming the source) when the source cannot be used.
    """
    opts = _check_options(fps, max_side, read_timeout, max_pixels, max_duration, max_bad_ratio, fit=fit)
    location = locate(source, allowed_root=allowed_root, allow_urls=allow_urls)
    stats = DecodeStats()
    if location.kind == "images":
        return _open_images(location, opts, stats, realtime)
    if location.live:
        return _open_live(location, opts, stats)
    container, info, frames = _open_stream(location, opts, stats)
    samples = _closing(container, _sample(frames, location.name, info, opts, origin=info.start))
    return FrameSource(location, info, samples, stats, realtime=realtime)


def probe(source: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
    """Header facts of ``source`` without decoding it: name, kind, width, height, native_fps,
    duration, codec. Takes the keyword arguments of :func:`open_source` (fps defaults to 1)."""
    kwargs.setdefault("fps", 1.0)
    with open_source(source, **kwargs) as src:
        return {"name": src.name, "kind": src.kind, "width": src.width, "height": src.height,
                "native_fps": src.native_fps, "duration": src.duration, "codec": src.codec}


def _check_options(fps: float, max_side: int | None, read_timeout: float, max_pixels: int,
                   max_duration: float | None, max_bad_ratio: float, *, fit: FrameFit | None = None) -> _Options:
    def positive(value: float) -> bool:
        return isinstance(value, (int, float)) and math.isfinite(value) and value > 0

    if not positive(fps):
        raise ConfigError(f"fps must be a positive number, got {fps!r}")
    if max_side is not None and not (isinstance(max_side, int) and max_side >= 1):
        raise ConfigError(f"max_side must be a positive integer, got {max_side!r}")
    if fit is not None and (max_side is not None or not isinstance(fit, FrameFit)):
        raise ConfigError(f"fit must be a FrameFit, and not given with max_side, got {fit!r}")
    if not positive(read_timeout):
        raise ConfigError(f"read_timeout must be a positive number of seconds, got {read_timeout!r}")
    if not (isinstance(max_pixels, int) and max_pixels >= 1):
        raise ConfigError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if max_duration is not None and not positive(max_duration):
        raise ConfigError(f"max_duration must be a positive number of seconds, got {max_duration!r}")
    if not (isinstance(max_bad_ratio, (int, float)) and 0 <= max_bad_ratio <= 1):
        raise ConfigError(f"max_bad_ratio must lie in [0, 1], got {max_bad_ratio!r}")
    return _Options(float(fps), max_side, fit, float(read_timeout), max_pixels,
                    None if max_duration is None else float(max_duration), float(max_bad_ratio))


def _open_stream(location: Location, opts: _Options, stats: DecodeStats,
                 should_stop: Callable[[], bool] = lambda: False
                 ) -> tuple[av.container.InputContainer, StreamInfo, Iterator[av.VideoFrame]]:
    """Opens a file or live source: (container, header facts, its good frames), limits checked.
    Nothing is decoded to read the header; when only the decoder knows the size (e.g. MPEG-4
    Part 2 in MP4), the first good frame is decoded here, checked, and put back in front."""
    container = open_container(location, opts.read_timeout)
    try:
        stream, info = video_stream(container, location, opts.max_pixels)
        check_limits(location.name, info, opts.max_pixels, opts.max_duration)
        counter = BadFrameCounter(location.name, stats, opts.max_bad_ratio)
        frames = decode_frames(container, stream, counter, opts.max_pixels, should_stop)
        if not (info.width and info.height):
            first = next(frames, None)
            if first is not None:
                info = replace(info, width=first.width, height=first.height)
                check_limits(location.name, info, opts.max_pixels, opts.max_duration)
                frames = itertools.chain([first], frames)
        return container, info, frames
    except BaseException:
        container.close()
        raise


def _sample(frames: Iterator[av.VideoFrame], name: str, info: StreamInfo, opts: _Options,
            origin: float | None) -> Iterator[tuple[float, np.ndarray]]:
    """(time, RGB [H, W, 3]) of the frames picked on the k / fps grid. Times are relative to
    ``origin`` (the stream's start; the first timestamp seen when None)."""
    step = 1.0 / info.native_fps if info.native_fps else 1.0 / opts.fps
    sampler = TimestampSampler(opts.fps, step)
    convert = _converter(opts)
    emitted = 0
    for frame in frames:
        raw = frame.time
        if origin is None and raw is not None:
            origin = raw
        sample_time = sampler.offer(None if raw is None else raw - origin)
        if sample_time is None:
            continue
        if opts.max_duration is not None and sample_time > opts.max_duration:
            raise VideoError(f"{name}: runs past the limit of {opts.max_duration:g} s")
        if frame.width * frame.height > opts.max_pixels:
            raise VideoError(f"{name}: frame of {frame.width}x{frame.height} exceeds the limit "
                             f"of {opts.max_pixels} pixels")
        yield sample_time, convert(frame)
        emitted += 1
    if not emitted:
        raise VideoError(f"{name}: no decodable video frames")


def _converter(opts: _Options) -> Callable[[av.VideoFrame], np.ndarray]:
    """Decoded frame -> RGB ``[H, W, 3]``: fitted to ``opts.fit``, or bounded by ``opts.max_side``.
    One per source (the scaler contexts are kept between frames)."""
    if opts.fit is not None:
        return FrameResizer(opts.fit)
    reformatter = VideoReformatter()
    return lambda frame: to_rgb(frame, opts.max_side, reformatter)


def _closing(container: av.container.InputContainer, samples: Iterator[tuple[float, np.ndarray]]
             ) -> Iterator[tuple[float, np.ndarray]]:
    """``samples``, closing ``container`` when exhausted, failed or closed early."""
    try:
        yield from samples
    finally:
        container.close()


def _open_images(location: Location, opts: _Options, stats: DecodeStats, realtime: bool) -> FrameSource:
    images = list_images(location)
    if not images:
        raise VideoError(f"{location.name}: folder has no images (png, jpg, jpeg, bmp, webp)")
    duration = len(images) / opts.fps
    first = None
    for image, path in images:
        first = read_image(path, image, location.name, opts.max_pixels)
        if first is not None:
            break
    if first is None:
        raise VideoError(f"{location.name}: none of its {len(images)} images can be decoded")
    frame, codec = first
    info = StreamInfo(width=frame.width, height=frame.height, native_fps=opts.fps,
                      duration=duration, codec=codec, start=0.0)
    check_limits(location.name, info, opts.max_pixels, opts.max_duration)
    return FrameSource(location, info, _image_samples(location.name, images, opts, stats), stats,
                       realtime=realtime)


def _image_samples(name: str, images: list[tuple[str, str]], opts: _Options, stats: DecodeStats
                   ) -> Iterator[tuple[float, np.ndarray]]:
    """(i / fps, RGB [H, W, 3]) for each decodable image i; broken ones are counted and skipped."""
    counter = BadFrameCounter(name, stats, opts.max_bad_ratio)
    convert = _converter(opts)
    for i, (image, path) in enumerate(images):
        decoded = read_image(path, image, name, opts.max_pixels)
        if decoded is None:
            counter.bad()
            continue
        counter.good()
        yield i / opts.fps, convert(decoded[0])


def _open_live(location: Location, opts: _Options, stats: DecodeStats) -> FrameSource:
    """Opens and decodes in a LiveReader thread; this thread waits with ``read_timeout``."""

    def work(reader: LiveReader) -> None:
        container, info, frames = _open_stream(location, opts, stats, should_stop=reader.stopped)
        try:
            reader.set_info(info)
            # Timestamps of cameras and streams start anywhere: the first frame is time 0.
            for sample in _sample(frames, location.name, info, opts, origin=None):
                if not reader.put(sample, drop_oldest=info.duration is None):
                    return
        finally:
            container.close()

    reader = LiveReader(location.name, work, stats)
    info = reader.wait_info(opts.read_timeout)
    return FrameSource(location, info, _live_samples(reader, opts.read_timeout), stats,
                       realtime=False, reader=reader)


def _live_samples(reader: LiveReader, read_timeout: float) -> Iterator[tuple[float, np.ndarray]]:
    while (sample := reader.get(read_timeout)) is not None:
        yield sample
