"""The ground truth of a synthetic video (what ``world.json`` holds) and its loader.

Coordinates are fractions of the frame side (``x`` right, ``y`` down, ``0..1``); times are
seconds of video time. A :class:`VideoSpec` is all the renderer needs: rendering the same spec
always gives the same frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from ...errors import ConfigError, DataError
from ...jsonfiles import read_json
from ...settings import Arg, NonNegativeInt, PositiveInt, Probability, from_dict, save_json, settings

Split = Literal["train", "val", "test"]
WORLD_VERSION = 1


@dataclass
class SynthObject:
    """An object on the table. ``inside`` names the container it starts in (or ``None``)."""

    id: str
    kind: str
    colour: str
    x: float
    y: float
    role: str | None = None  # the task role it plays; None for a background object
    inside: str | None = None

    @property
    def description(self) -> str:
        """What narrations call it, e.g. ``"red cup"``."""
        return f"{self.colour} {self.kind}"


@dataclass
class SynthAction:
    """One atomic action. It runs over ``[start, end]``; ``time`` is when it visibly happens
    (the narration timestamp, ``start < time < end``); ``x, y`` is where the hand does it."""

    verb: str
    obj: str | None
    target: str | None
    tool: str | None
    start: float
    time: float
    end: float
    x: float
    y: float
    step: int
    narration: str  # Ego4D style, "#C C picks up the red cup"
    imperative: str  # "pick up the red cup"
    noun: str  # LTA noun of the action ("cup", "table", "water")


@dataclass
class SynthStep:
    """One step of the task instance: ``step_id`` indexes the global step taxonomy."""

    index: int
    step_id: int
    description: str
    start: float
    end: float
    optional: bool
    actions: list[int] = field(default_factory=list)


@dataclass
class RenderStyle:
    """Per-video nuisance: camera jitter amplitude (fraction of the side), lighting swing
    (fraction of brightness), a distractor fly, table tint and texture noise seed."""

    seed: int
    jitter: float
    light: float
    fly: bool
    table: tuple[int, int, int]


@dataclass
class SynthPart:
    """One task instance of a video that chains several (a live-like stream). Over ``[start, end)``
    the table holds this part's ``objects`` (ids into :attr:`VideoSpec.objects`) and its ``stain``;
    between two parts the scene cuts to a freshly laid table, in the middle of an idle stretch."""

    task: str
    goal: str
    category: str
    start: float
    end: float
    objects: list[str]
    stain: tuple[float, float, float] | None = None


@dataclass
class VideoSpec:
    """A whole synthetic video: layout, task instance(s), actions and how to render it.

    A *clip* (``parts`` is None, every video of a default world) shows one task instance:
    ``task``, ``goal``, ``category``, ``objects`` and ``stain`` describe it. A *live-like stream*
    chains several: ``parts`` lists them in order (``objects`` is then every part's objects,
    ``stain`` None, and ``task``/``goal``/``category`` name the distinct tasks in order of first
    appearance), and ``idle`` lists its idle stretches ``[start, end]``: nothing is under way and
    nothing is narrated (the empty hand returns to rest in the first second)."""

    uid: str
    index: int
    seed: int
    split: Split
    task: str
    goal: str
    category: str
    duration: float
    fps: float
    size: int
    objects: list[SynthObject]
    actions: list[SynthAction]
    steps: list[SynthStep]
    style: RenderStyle
    stain: tuple[float, float, float] | None = None  # x, y, radius of the dirty spot
    parts: list[SynthPart] | None = None
    idle: list[tuple[float, float]] | None = None

    @property
    def num_frames(self) -> int:
        """Frames in the video: frame ``i`` shows time ``i / fps``."""
        return int(round(self.duration * self.fps))

    def object(self, oid: str) -> SynthObject:
        for obj in self.objects:
            if obj.id == oid:
                return obj
        raise KeyError(oid)

    def scenes(self) -> list[tuple[float, float, VideoSpec]]:
        """``(start, end, spec)`` per table the video shows: a clip is one scene (itself); each part
        of a stream is one, a spec of that part alone (its objects, actions and stain) that renders
        and labels exactly like a clip over ``[start, end)``."""
        if not self.parts:
            return [(0.0, self.duration, self)]
        out = []
        for p in self.parts:
            ids = set(p.objects)
            out.append((p.start, p.end, replace(
                self, task=p.task, goal=p.goal, category=p.category, objects=[o for o in self.objects if o.id in ids],
                actions=[a for a in self.actions if p.start <= a.start < p.end], steps=[], stain=p.stain,
                parts=None, idle=None)))
        return out


IdleSeconds = Annotated[float, Field(ge=3, le=3600)]


@settings
class LiveOptions:
    """Live-like streams: several tasks in a row with idle stretches between and within them."""

    live_fraction: Probability = 0.0
    """Share of the videos that are live-like streams, each picked from (seed, index) alone; 1:
    every video, 0: none (a world of one-task clips)."""
    live_duration: Annotated[float, Field(ge=4, le=3600)] | None = None
    """Seconds per live-like video (default: --duration)."""
    tasks_per_video: Annotated[int, Field(ge=0, le=10_000)] = 0
    """Most tasks chained in a live-like video; 0: as many as fit. Time left at the end is idle."""
    idle_min: IdleSeconds = 5.0
    """Shortest idle stretch in seconds (3 to 3600)."""
    idle_max: IdleSeconds = 180.0
    """Longest idle stretch in seconds (3 to 3600)."""
    idle_distribution: Literal["loguniform", "uniform"] = "loguniform"
    """How idle lengths are drawn between --idle-min and --idle-max: 'loguniform' (as many
    stretches of 5-15 s as of 1-3 min) or 'uniform'."""
    idle_within: Probability = 0.25
    """Chance of an idle stretch at each step boundary inside a task (where the hand is empty);
    every pair of consecutive tasks is separated by one."""

    def __post_init__(self) -> None:
        if self.idle_max < self.idle_min:
            raise ValueError(f"idle_max {self.idle_max} is below idle_min {self.idle_min}")


@settings
class WorldOptions:
    """How a world is generated (stored in ``world.json``)."""

    num_videos: Annotated[PositiveInt, Field(le=1_000_000), Arg(flag="--videos")]
    """Number of videos."""
    seed: Annotated[NonNegativeInt, Field(lt=2**31)] = 0
    """World seed: everything generated is a function of it."""
    duration: Annotated[float, Field(ge=4, le=3600)] = 60.0
    """Seconds per video (4 to 3600)."""
    size: Annotated[int, Field(ge=32, le=1024, multiple_of=2)] = 96
    """Frame side in pixels (even, 32 to 1024)."""
    fps: Annotated[float, Field(ge=1, le=60)] = 8.0
    """Frames per second of the videos (1 to 60)."""
    split: Literal["auto", "train", "val", "test"] = "auto"
    """'auto': 80/10/10 by (seed, index); otherwise every video in this split."""
    live: LiveOptions = field(default_factory=LiveOptions)
    """Live-like streams (none by default)."""


@dataclass
class SynthWorld:
    """The content of ``world.json``: options and one :class:`VideoSpec` per video."""

    version: int
    options: WorldOptions
    videos: list[VideoSpec]
    root: Path | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def load(cls, root: str | Path) -> SynthWorld:
        """Read ``root/world.json`` (strict: wrong keys or types raise a ConfigError)."""
        root = Path(root)
        file = root / "world.json"
        world = from_dict(cls, read_json(file, error=ConfigError), source=str(file))
        if world.version != WORLD_VERSION:
            raise DataError(f"unsupported version {world.version}", file=str(root / "world.json"),
                            field="version")
        world.root = root
        return world

    def save(self, root: str | Path) -> None:
        """Write ``root/world.json``. Live-stream fields are left out where they are unused (no
        live options, a clip's ``parts``/``idle``), so a world of clips is written as before them."""
        data = asdict(self)
        data.pop("root")
        if data["options"]["live"] == asdict(LiveOptions()):
            data["options"].pop("live")
        for video in data["videos"]:
            for key in ("parts", "idle"):
                if video[key] is None:
                    video.pop(key)
        save_json(data, Path(root) / "world.json")

    def video(self, uid: str) -> VideoSpec:
        for v in self.videos:
            if v.uid == uid:
                return v
        raise KeyError(uid)

    def video_path(self, uid: str) -> Path:
        """The mp4 of video ``uid`` (needs a world loaded from disk)."""
        if self.root is None:
            raise ValueError("world has no root folder")
        return self.root / "videos" / f"{uid}.mp4"

    def split(self, name: Split) -> list[VideoSpec]:
        return [v for v in self.videos if v.split == name]

