"""Frame bytes from a client -> an RGB array. The format is recognised by content (JPEG, PNG,
WebP only) and the pixel cap is checked on the size the header declares, before any decoder
allocates the image; the decoded size is checked again. Metadata (text, ICC, EXIF) is removed
before FFmpeg sees the image (``video.metadata``), so it cannot be inflated or multiplied."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from ..video.imagesize import image_codec, jpeg_size, webp_size
from ..video.metadata import ImageDataError

if TYPE_CHECKING:
    from ..video.resize import FrameFit


class ImageError(ValueError):
    """A frame that cannot be used; ``code`` is its protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def sniff(data: bytes) -> tuple[str, tuple[int, int] | None] | None:
    """(FFmpeg decoder name, (width, height) from the header or None) of JPEG/PNG/WebP bytes; None
    for anything else."""
    head = data[:32]
    codec = image_codec(head)
    if codec == "png":
        if head[12:16] == b"IHDR" and len(head) >= 24:
            return "png", (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"))
        return "png", None
    if codec == "mjpeg":
        return "mjpeg", jpeg_size(io.BytesIO(data))
    if codec == "webp":
        return "webp", webp_size(head) if len(head) >= 30 else None
    return None


def decode_image(data: bytes, *, max_pixels: int, max_side: int | None = None, fit: FrameFit | None = None
                 ) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]``: scaled to ``fit`` (the model's input size, as every other path does:
    :mod:`streamvlm.video.resize`), or with its long side at most ``max_side``; :class:`ImageError`
    otherwise."""
    import av
    from av.video.reformatter import VideoReformatter

    from ..video.decoding import decode_still, to_rgb

    found = sniff(data)
    if found is None:
        raise ImageError("bad_frame", "not a JPEG, PNG or WebP image")
    codec, size = found
    if size is None:
        raise ImageError("bad_frame", f"{codec} image with an unreadable header")
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError("bad_frame", f"image of {width}x{height} pixels")
    if width * height > max_pixels:
        raise ImageError("image_too_large", f"image of {width}x{height} exceeds the limit of {max_pixels} pixels")
    try:
        frame = decode_still(data, codec, max_pixels)
    except (av.FFmpegError, ImageDataError, ValueError) as exc:
        raise ImageError("bad_frame", f"the {codec} image cannot be decoded ({exc})") from None
    if frame is None:
        raise ImageError("bad_frame", f"the {codec} image cannot be decoded")
    if frame.width * frame.height > max_pixels:
        raise ImageError("image_too_large", f"image of {frame.width}x{frame.height} exceeds the limit")
    if fit is not None:
        from ..video.resize import FrameResizer

        return FrameResizer(fit)(frame)
    return to_rgb(frame, max_side, VideoReformatter())


def encode_png(image: np.ndarray) -> bytes:
    """uint8 RGB ``[H, W, 3]`` -> PNG bytes (lossless: what a client sends to reproduce ``narrate``)."""
    import av

    ctx = av.CodecContext.create("png", "w")
    ctx.height, ctx.width = image.shape[:2]
    ctx.pix_fmt = "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return b"".join(bytes(p) for p in ctx.encode(frame) + ctx.encode(None))
