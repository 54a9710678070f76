"""Turns what the user passed (a path, ``webcam:N``, ``/dev/videoN``, a URL) into a checked
:class:`Location`: its kind and the exact string handed to FFmpeg.

Safety rules:
- With ``allowed_root`` set, a local path must lie under it after resolving symlinks and ``..``;
  otherwise :class:`VideoError` ("... escapes the data root"). Webcam devices are local paths too,
  and so is each image of an image folder (see :func:`list_images`). Files that make FFmpeg read
  other files (hls/concat/dash playlists) are refused under a root (``decoding.video_stream``).
- A path that cannot be resolved or examined (symlink loop, a file used as a folder, a name too
  long, permission denied, a NUL byte) is a VideoError naming it, never an OSError.
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
    root: str | None = None  # the resolved data root, when one was set


def locate(source: str | os.PathLike, *, allowed_root: str | os.PathLike | None = None,
           allow_urls: bool | None = None) -> Location:
    """Classifies and checks ``source``; raises VideoError when it cannot be used."""
    name = os.fspath(source)
    if not name:
        raise VideoError("empty video source")
    if "\0" in name:
        raise VideoError(f"{name!r}: path contains a NUL byte")
    webcam = _WEBCAM.fullmatch(name)
    if webcam:
        device = Path(f"/dev/video{webcam.group(1)}")
        return _local(name, device, allowed_root, webcam=True)
    scheme = _SCHEME.match(name)
    if scheme and not os.path.lexists(name):  # a local file may be named like a scheme
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
    # os.path.realpath, unlike Path.resolve on Python < 3.13, does not raise on symlink loops;
    # the stat below reports them (and every other unusable path) as OSError.
    resolved = Path(os.path.realpath(os.path.expanduser(path)))
    root = None
    if allowed_root is not None:
        root = data_root(allowed_root)
        if not resolved.is_relative_to(root):
            raise VideoError(f"{name}: path escapes the data root {root}")
    try:
        mode = os.stat(resolved).st_mode
    except FileNotFoundError:
        what = "no such webcam device" if webcam else "no such file or folder"
        raise VideoError(f"{name}: {what}") from None
    except OSError as error:
        raise VideoError(f"{name}: cannot access ({error.strerror or error})") from None
    root_str = None if root is None else str(root)
    if webcam:
        if not stat.S_ISCHR(mode):
            raise VideoError(f"{name}: not a video device")
        return Location(name, "webcam", str(resolved), live=True, root=root_str)
    if stat.S_ISDIR(mode):
        return Location(name, "images", str(resolved), live=False, root=root_str)
    return Location(name, "file", str(resolved), live=not stat.S_ISREG(mode), root=root_str)


def data_root(allowed_root: str | os.PathLike) -> Path:
    """``allowed_root`` with ``~``, ``..`` and symlinks resolved."""
    root = os.fspath(allowed_root)
    if "\0" in root:
        raise VideoError(f"data root {root!r} contains a NUL byte")
    return Path(os.path.realpath(os.path.expanduser(root)))


def list_images(location: Location) -> list[tuple[str, str]]:
    """(file name, resolved path) of each image file (png/jpg/jpeg/bmp/webp, any case) of the
    folder ``location``, sorted by name. Entries that are not regular files once symlinks are
    followed (folders, dangling links, symlink loops, unreadable entries) are left out.

    With a data root (``location.root``), an image that resolves outside it (a symlink leaving
    the root) makes the whole folder refused with VideoError naming it, rather than being
    skipped: a folder mixing data with links to elsewhere is not trusted. Images are returned as
    resolved paths, so what is decoded is what was checked."""
    try:
        with os.scandir(location.target) as entries:
            names = sorted(entry.name for entry in entries
                           if entry.name.lower().endswith(IMAGE_SUFFIXES))
    except OSError as error:
        reason = error.strerror or error
        raise VideoError(f"{location.name}: cannot list folder ({reason})") from None
    root = None if location.root is None else Path(location.root)
    images = []
    for file_name in names:
        resolved = os.path.realpath(os.path.join(location.target, file_name))
        if root is not None and not Path(resolved).is_relative_to(root):
            raise VideoError(f"{location.name}: image {file_name} escapes the data root {root}")
        try:
            regular = stat.S_ISREG(os.stat(resolved).st_mode)
        except OSError:
            regular = False
        if regular:
            images.append((file_name, resolved))
    return images
