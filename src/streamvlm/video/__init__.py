"""Video sources: files, webcams, network streams and image folders, decoded with PyAV and
sampled at a target fps by timestamp. See :func:`open_source`."""

from streamvlm.video.frames import DecodeStats, Frame
from streamvlm.video.sources import FrameSource, open_source, probe

__all__ = ["DecodeStats", "Frame", "FrameSource", "open_source", "probe"]
