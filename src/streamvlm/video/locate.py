"""Turns what the user passed (a path, ``webcam:N``, ``/dev/videoN``, a URL) into a checked
:class:`Location`: its kind and the exact string handed to FFmpeg.

Safety rules:
- With ``allowed_root`` set, a local path must lie under it after resolving symlinks and ``..``;
  otherwise :class:`VideoError` ("... escapes the data root"). Webcam devices are local paths too.
- URLs (rtsp, rtsps, rtmp, rtmps, http, https) are allowed by default, but refused when
  ``allowed_root`` is set unless ``allow_urls=True`` is passed explicitly. Other schemes and
  FFmpeg protocol prefixes (``concat:``, ``file:``, ``pipe:``, ...) are always refused.
- Local paths reach FFmpeg as absolute paths, so a file name is never read as a protocol.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from streamvlm.errors import VideoError

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

_WEBCAM = re.compile(r"webcam:(\d+)")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True)
class Location:
    """name: what the user passed. kind: "file" | "webcam" | "url" | "images".
    target: the absolute path or URL to open. live: read through a background thread with a
    timeout (webcams, URLs, and local files that are not regular files, such as FIFOs)."""

    name: str
    kind: str
    target: str
    live: bool


def locate(source: str | os.PathLike, *, allowed_root: str | os.PathLike | None = None,
           allow_urls: bool | None = None) -> Location:
    """Classifies and checks ``source``; raises VideoError when it cannot be used."""
    name = os.fspath(source)
    if not name:
        raise VideoError("empty video source")
    webcam = _WEBCAM.fullmatch(name)
    if webcam:
        device = Path(f"/dev/video{webcam.group(1)}")
        return _local(name, device, allowed_root, webcam=True)
    scheme = _SCHEME.match(name)
    if scheme and not Path(name).exists():
        proto = scheme.group(1).lower()
        if proto not in URL_SCHEMES or not name[scheme.end():].startswith("//"):
            raise VideoError(f"{name}: unsupported source scheme '{proto}:' "
                             f"(use a local path, webcam:N or one of {', '.join(URL_SCHEMES)})")
        urls_ok = allow_urls if allow_urls is not None else allowed_root is None
        if not urls_ok:
            raise VideoError(f"{name}: URL sources are refused when a data root is set "
                             "(pass allow_urls=True to enable them)")
        return Location(name, "url", name, live=True)
    path = Path(name)
    return _local(name, path, allowed_root, webcam=re.fullmatch(r"/dev/video\d+", name) is not None)


def _local(name: str, path: Path, allowed_root: str | os.PathLike | None, *, webcam: bool) -> Location:
    resolved = path.expanduser().resolve()
    if allowed_root is not None:
        root = Path(allowed_root).expanduser().resolve()
        if not resolved.is_relative_to(root):
            raise VideoError(f"{name}: path escapes the data root {root}")
    try:
        mode = resolved.stat().st_mode
    except FileNotFoundError:
        what = "no such webcam device" if webcam else "no such file or folder"
        raise VideoError(f"{name}: {what}") from None
    except OSError as error:
        raise VideoError(f"{name}: cannot access ({error.strerror})") from None
    if webcam:
        if not stat.S_ISCHR(mode):
            raise VideoError(f"{name}: not a video device")
        return Location(name, "webcam", str(resolved), live=True)
    if stat.S_ISDIR(mode):
        return Location(name, "images", str(resolved), live=False)
    return Location(name, "file", str(resolved), live=not stat.S_ISREG(mode))


def list_images(folder: str) -> list[str]:
    """Image files of ``folder`` (png/jpg/jpeg/bmp/webp, any case), sorted by name."""
    names = sorted(entry.name for entry in os.scandir(folder)
                   if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file())
    return [os.path.join(folder, n) for n in names]
