"""Render a planned video to RGB frames with numpy alone.

The scene is seen from above: a wooden table, coloured objects, containers whose lid or drawer
opens, and the camera wearer's right arm reaching in from the bottom edge. An open hand has its
fingers spread; a hand that holds something closes around it and carries it, slightly enlarged
(lifted) with a shadow. On top come the nuisances of egocentric video: a fly crossing the frame,
slowly changing light and camera jitter.

:func:`render_video_frames` yields ``uint8 [size, size, 3]`` frames, frame ``i`` at time
``i / fps``. Every primitive is drawn inside its own bounding box, so a frame costs well under a
millisecond of numpy work at 96 px.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .planner import DRAWER_DEPTH, HAND_HOME
from .spec import SynthAction, VideoSpec
from .vocabulary import COLOURS, CONTAINERS, OBJECT_SCALE

SKIN = np.array([238, 188, 152], np.float32)
SLEEVE = np.array([70, 78, 100], np.float32)
WATER = np.array([120, 190, 255], np.float32)
STEEL = np.array([205, 208, 215], np.float32)
DARK = np.array([35, 30, 28], np.float32)
BREAD = np.array([225, 190, 125], np.float32)
FLESH = np.array([250, 240, 200], np.float32)
STAIN = np.array([95, 60, 30], np.float32)
BOX_INSIDE = np.array([120, 95, 70], np.float32)

_HELD_LIFT = 0.045  # a held object is drawn this far above the palm centre
_WORK = {"cut", "wipe", "pour"}


class _Painter:
    """Draws filled primitives on a float32 ``[H, W, 3]`` canvas; coordinates are fractions of
    the frame side, shifted by ``margin`` pixels (the canvas is larger than the frame so that
    camera jitter can crop it)."""

    def __init__(self, canvas: np.ndarray, size: int, margin: int) -> None:
        self.canvas, self.size, self.margin = canvas, size, margin

    def _box(self, x0: float, y0: float, x1: float, y1: float):
        s, m = self.size, self.margin
        h, w = self.canvas.shape[:2]
        c0, r0 = max(int(math.floor(x0 * s + m)), 0), max(int(math.floor(y0 * s + m)), 0)
        c1, r1 = min(int(math.ceil(x1 * s + m)) + 1, w), min(int(math.ceil(y1 * s + m)) + 1, h)
        return r0, r1, c0, c1

    def _grid(self, r0: int, r1: int, c0: int, c1: int):
        s, m = self.size, self.margin
        ys = (np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5 - m) / s
        xs = (np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5 - m) / s
        return xs, ys

    def _paint(self, r0, r1, c0, c1, mask, colour, alpha: float) -> None:
        region = self.canvas[r0:r1, c0:c1]
        if alpha >= 1.0:
            region[mask] = colour
        else:
            region[mask] = region[mask] * (1.0 - alpha) + np.asarray(colour, np.float32) * alpha

    def disc(self, x: float, y: float, r: float, colour, alpha: float = 1.0) -> None:
        r0, r1, c0, c1 = self._box(x - r, y - r, x + r, y + r)
        if r0 >= r1 or c0 >= c1:
            return
        xs, ys = self._grid(r0, r1, c0, c1)
        self._paint(r0, r1, c0, c1, (xs - x) ** 2 + (ys - y) ** 2 <= r * r, colour, alpha)

    def rect(self, x: float, y: float, w: float, h: float, colour, alpha: float = 1.0) -> None:
        """Axis-aligned rectangle centred on ``(x, y)``."""
        s, m = self.size, self.margin
        hgt, wid = self.canvas.shape[:2]
        c0 = min(max(int(round((x - w / 2) * s + m)), 0), wid)
        r0 = min(max(int(round((y - h / 2) * s + m)), 0), hgt)
        c1 = min(max(int(round((x + w / 2) * s + m)), c0 + 1), wid)
        r1 = min(max(int(round((y + h / 2) * s + m)), r0 + 1), hgt)
        if r0 >= r1 or c0 >= c1:
            return
        region = self.canvas[r0:r1, c0:c1]
        if alpha >= 1.0:
            region[...] = colour
        else:
            region *= 1.0 - alpha
            region += np.asarray(colour, np.float32) * alpha

    def capsule(self, x0: float, y0: float, x1: float, y1: float, r: float, colour) -> None:
        """A thick segment with round ends (the arm)."""
        r0, r1, c0, c1 = self._box(min(x0, x1) - r, min(y0, y1) - r, max(x0, x1) + r, max(y0, y1) + r)
        if r0 >= r1 or c0 >= c1:
            return
        xs, ys = self._grid(r0, r1, c0, c1)
        dx, dy = x1 - x0, y1 - y0
        u = np.clip(((xs - x0) * dx + (ys - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
        self._paint(r0, r1, c0, c1, (xs - x0 - u * dx) ** 2 + (ys - y0 - u * dy) ** 2 <= r * r, colour, 1.0)


def _shade(colour: np.ndarray, k: float, towards: float = 0.0) -> np.ndarray:
    """``colour`` mixed with grey level ``towards`` (0 black, 255 white) by ``1 - k``."""
    return colour * k + towards * (1.0 - k)


@dataclass
class _State:
    """What an object looks like at one instant."""

    holder: str  # "table", "hand", "in:<id>", "on:<id>"
    x: float
    y: float
    opened: float
    fill: float
    cut: float


class Timeline:
    """Object states and hand position as functions of time, replayed from the actions."""

    def __init__(self, spec: VideoSpec) -> None:
        self.spec = spec
        self.kinds = {o.id: o.kind for o in spec.objects}
        self.colours = {o.id: np.array(COLOURS[o.colour], np.float32) for o in spec.objects}
        self.holder_t: dict[str, list[float]] = {o.id: [-1.0] for o in spec.objects}
        self.holder_v: dict[str, list[tuple[str, float, float]]] = {
            o.id: [(f"in:{o.inside}" if o.inside else "table", o.x, o.y)] for o in spec.objects}
        self.num: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
        self.stain_t: tuple[list[float], list[float]] = ([0.0], [1.0])
        self.starts = [a.start for a in spec.actions]
        for a in spec.actions:
            self._apply(a)
        self.hand_t, self.hand_xy = self._hand_keyframes()

    def _set_holder(self, oid: str, t: float, holder: str, x: float = 0.0, y: float = 0.0) -> None:
        self.holder_t[oid].append(t)
        self.holder_v[oid].append((holder, x, y))

    def _ramp(self, oid: str, attr: str, t0: float, t1: float, v0: float, v1: float) -> None:
        ts, vs = self.num.setdefault((oid, attr), ([0.0], [v0]))
        ts += [t0, t1]
        vs += [v0, v1]

    def _apply(self, a: SynthAction) -> None:
        if a.verb in ("pick", "take_out"):
            self._set_holder(a.obj, a.time, "hand")
        elif a.verb == "put_down":
            self._set_holder(a.obj, a.time, "table", a.x, a.y)
        elif a.verb == "put_in":
            self._set_holder(a.obj, a.time, f"in:{a.target}")
        elif a.verb in ("stack", "put_on"):
            self._set_holder(a.obj, a.time, f"on:{a.target}")
        elif a.verb in ("open", "close"):
            o = float(a.verb == "open")
            self._ramp(a.obj, "opened", a.time, a.end, 1.0 - o, o)
        elif a.verb == "pour":
            self._ramp(a.target, "fill", a.time, a.end, 0.0, 1.0)
        elif a.verb == "cut":
            self._ramp(a.obj, "cut", a.time, a.end, 0.0, 1.0)
        elif a.verb == "wipe":
            self.stain_t = ([0.0, a.time, a.end], [1.0, 1.0, 0.0])

    def _hand_keyframes(self) -> tuple[np.ndarray, np.ndarray]:
        """Times ``[K]`` and positions ``[K, 2]`` the hand passes through (eased in between)."""
        home = np.array(HAND_HOME)
        keys: list[tuple[float, np.ndarray]] = [(0.0, home)]
        holding = False
        end_t, pos = 0.0, home
        for a in self.spec.actions:
            if not holding and a.start - end_t > 2.0:  # rest the empty hand during long pauses
                keys += [(end_t + 1.0, home), (a.start, home)]
            else:
                keys.append((a.start, pos))
            at = np.array([a.x, a.y])
            keys.append((a.time, at))
            if a.verb in _WORK:
                pos = at
            elif a.verb in ("open", "close"):
                obj = self.spec.object(a.obj)
                pos = (at + [0.0, DRAWER_DEPTH * (1 if a.verb == "open" else -1)] if obj.kind == "drawer"
                       else at + [0.0, -0.11 if a.verb == "open" else 0.0])
            else:  # after grasping or releasing, pull back towards the body
                pos = at + 0.35 * (home - at)
            keys.append((a.end, pos))
            holding = a.verb in ("pick", "take_out") or (holding and a.verb not in
                                                           ("put_down", "put_in", "stack", "put_on"))
            end_t = a.end
        if not holding and self.spec.duration - end_t > 2.0:
            keys.append((end_t + 1.0, home))
        return np.array([k[0] for k in keys]), np.array([k[1] for k in keys])

    def hand(self, t: float) -> tuple[float, float]:
        """Hand centre at time ``t``: eased keyframes, a working motion, a little sway."""
        i = int(np.searchsorted(self.hand_t, t, side="right"))
        if i >= len(self.hand_t):
            x, y = self.hand_xy[-1]
        else:
            t0, t1 = self.hand_t[i - 1], self.hand_t[i]
            u = 1.0 if t1 <= t0 else (t - t0) / (t1 - t0)
            u = u * u * (3.0 - 2.0 * u)
            x, y = self.hand_xy[i - 1] + u * (self.hand_xy[i] - self.hand_xy[i - 1])
        a = self.current(t)
        if a is not None and a.verb in _WORK and a.time <= t:
            w = t - a.time
            if a.verb == "cut":  # sawing up and down
                y += 0.03 * math.sin(2 * math.pi * 2.0 * w)
            elif a.verb == "wipe":  # circles over the stain
                x += 0.05 * math.cos(2 * math.pi * 1.0 * w) - 0.05
                y += 0.04 * math.sin(2 * math.pi * 1.0 * w)
            else:  # pouring: a slow shake
                x += 0.01 * math.sin(2 * math.pi * 1.5 * w)
        return x + 0.004 * math.sin(1.3 * t), y + 0.004 * math.sin(1.7 * t + 1.0)

    def current(self, t: float) -> SynthAction | None:
        """The action under way at ``t``, if any."""
        i = bisect_right(self.starts, t) - 1
        if i >= 0 and t < self.spec.actions[i].end:
            return self.spec.actions[i]
        return None

    def _value(self, oid: str, attr: str, t: float, default: float) -> float:
        track = self.num.get((oid, attr))
        return float(np.interp(t, *track)) if track else default

    def state(self, oid: str, t: float) -> _State:
        i = bisect_right(self.holder_t[oid], t) - 1
        holder, x, y = self.holder_v[oid][i]
        return _State(holder, x, y, self._value(oid, "opened", t, 0.0), self._value(oid, "fill", t, 0.0),
                      self._value(oid, "cut", t, 0.0))

    def stain(self, t: float) -> float:
        return float(np.interp(t, *self.stain_t))


@dataclass(frozen=True)
class _Placed:
    """An object as it is drawn: where (``x, y`` at scale ``k``), when, its colour and state."""

    oid: str
    x: float
    y: float
    k: float
    t: float
    colour: np.ndarray
    state: _State
    tilted: bool


_SLOTS = ((-0.04, -0.035), (0.04, 0.035), (0.04, -0.035), (-0.04, 0.035))


class _Scene:
    """Draws the scene of one video at a given time."""

    def __init__(self, spec: VideoSpec) -> None:
        self.spec = spec
        self.tl = Timeline(spec)
        s = spec.size
        self.margin = int(math.ceil(spec.style.jitter * s * 1.5)) + 1
        side = s + 2 * self.margin
        rng = np.random.default_rng(spec.style.seed)
        ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
        xs, ys = (xs - self.margin) / s, (ys - self.margin) / s
        grain = 3.0 * np.sin(55.0 * ys + 2.5 * np.sin(6.0 * xs + rng.uniform(0, 6)))
        blotch = sum(3.0 * np.sin(rng.uniform(2, 6) * xs + rng.uniform(2, 6) * ys + rng.uniform(0, 6))
                     for _ in range(3))
        self.background = (np.array(spec.style.table, np.float32)[None, None, :]
                           + (grain + blotch)[..., None]).astype(np.float32)
        self.xs, self.ys = xs[..., None], ys[..., None]
        self.light = rng.uniform(0, 2 * math.pi, 3), rng.uniform(0.05, 0.15, 2)
        self.fly = rng.uniform(0.2, 0.9, 4), rng.uniform(0, 2 * math.pi, 4)
        self.jitter = rng.uniform(0.04, 0.15, 4), rng.uniform(0, 2 * math.pi, 4)  # Hz: slow head sway

    # -- objects -----------------------------------------------------------------------------
    def _object(self, p: _Painter, oid: str, x: float, y: float, k: float, t: float, tilted: bool = False) -> None:
        """Draw object ``oid`` centred at ``(x, y)`` at scale ``k``, with its contents and
        whatever is stacked on it."""
        tl = self.tl
        kind = tl.kinds[oid]
        draw = _DRAW.get(kind)
        if draw is None:
            raise ValueError(f"unknown kind {kind!r}")
        draw(self, p, _Placed(oid, x, y, k, t, tl.colours[oid], tl.state(oid, t), tilted))
        for other in self.spec.objects:  # things stacked on this one
            if tl.state(other.id, t).holder == f"on:{oid}":
                self._object(p, other.id, x + 0.01 * k, y - 0.02 * k, k, t)

    # one drawing per kind: ``o`` is where and how the object is (its colour, its state)
    def _cup(self, p: _Painter, o: _Placed) -> None:
        x, y, k, c = o.x, o.y, o.k, o.colour
        p.rect(x + 0.07 * k, y, 0.04 * k, 0.028 * k, c)
        p.disc(x, y, 0.065 * k, c)
        p.disc(x, y, 0.045 * k, WATER * o.state.fill + _shade(c, 0.35) * (1 - o.state.fill))
        self._contents(p, o.oid, x, y, k * 0.6, o.t)

    def _ball(self, p: _Painter, o: _Placed) -> None:
        x, y, k = o.x, o.y, o.k
        p.disc(x, y, 0.06 * k, o.colour)
        p.disc(x - 0.02 * k, y - 0.02 * k, 0.016 * k, (255, 255, 255), 0.6)

    def _apple(self, p: _Painter, o: _Placed) -> None:
        x, y, k = o.x, o.y, o.k
        p.disc(x, y, 0.062 * k, o.colour)
        if o.state.cut > 0.5:
            p.disc(x, y, 0.042 * k, FLESH)
            p.rect(x, y, 0.012 * k, 0.13 * k, DARK)
        p.rect(x, y - 0.065 * k, 0.012 * k, 0.025 * k, (100, 60, 20))
        p.disc(x + 0.02 * k, y - 0.07 * k, 0.016 * k, (40, 140, 40))

    def _box(self, p: _Painter, o: _Placed) -> None:
        x, y, k, c = o.x, o.y, o.k, o.colour
        p.rect(x, y, 0.22 * k, 0.2 * k, c)
        opened = o.state.opened
        if opened > 0:
            p.rect(x, y, 0.18 * k, 0.16 * k, BOX_INSIDE)
            self._contents(p, o.oid, x, y, k * 0.6, o.t)
            p.rect(x, y - 0.115 * k - 0.02 * opened * k, 0.22 * k, 0.04 * opened * k, _shade(c, 0.75, 255))
        lid = 0.2 * (1.0 - opened)
        if lid > 0.005:
            p.rect(x, y + 0.1 * k - lid * k / 2, 0.22 * k, lid * k, c)
            p.rect(x, y + 0.1 * k - lid * k / 2, 0.22 * k, min(0.03, lid) * k, _shade(c, 0.6, 255))

    def _bowl(self, p: _Painter, o: _Placed) -> None:
        x, y, k, c = o.x, o.y, o.k, o.colour
        p.disc(x, y, 0.105 * k, c)
        p.disc(x, y, 0.078 * k, WATER * o.state.fill + _shade(c, 0.35, 255) * (1 - o.state.fill))
        self._contents(p, o.oid, x, y, k * 0.6, o.t)

    def _drawer(self, p: _Painter, o: _Placed) -> None:
        x, k, c, opened = o.x, o.k, o.colour, o.state.opened
        front = 0.04 + DRAWER_DEPTH * opened
        if opened > 0:
            p.rect(x, front / 2 - 0.02, 0.36, front, _shade(c, 0.8))
            p.rect(x, front / 2 - 0.02, 0.3, front - 0.03, BOX_INSIDE)
            if opened > 0.5:
                self._contents(p, o.oid, x, front - DRAWER_DEPTH * 0.5 - 0.03, 0.6 * k, o.t)
        p.rect(x, front, 0.38, 0.07, c)
        p.rect(x, front, 0.1, 0.022, DARK)

    def _knife(self, p: _Painter, o: _Placed) -> None:
        x, y, k = o.x, o.y, o.k
        p.rect(x - 0.04 * k, y, 0.16 * k, 0.03 * k, STEEL)
        p.rect(x + 0.08 * k, y, 0.09 * k, 0.045 * k, o.colour)

    def _bottle(self, p: _Painter, o: _Placed) -> None:
        x, y, k, c = o.x, o.y, o.k, o.colour
        if o.tilted:  # lying on its side while pouring, neck towards the left
            p.rect(x, y, 0.15 * k, 0.08 * k, c)
            p.rect(x - 0.095 * k, y, 0.045 * k, 0.036 * k, _shade(c, 0.7, 255))
            p.disc(x - 0.13 * k, y + 0.02 * k, 0.015 * k, WATER)
        else:
            p.rect(x, y + 0.02 * k, 0.08 * k, 0.15 * k, c)
            p.rect(x, y - 0.075 * k, 0.036 * k, 0.045 * k, _shade(c, 0.7, 255))
            p.rect(x, y - 0.1 * k, 0.04 * k, 0.015 * k, DARK)

    def _book(self, p: _Painter, o: _Placed) -> None:
        x, y, k, c = o.x, o.y, o.k, o.colour
        p.rect(x, y, 0.17 * k, 0.21 * k, c)
        p.rect(x + 0.07 * k, y, 0.025 * k, 0.19 * k, (245, 245, 235))
        p.rect(x - 0.075 * k, y, 0.02 * k, 0.21 * k, _shade(c, 0.55))

    def _sponge(self, p: _Painter, o: _Placed) -> None:
        x, y, k = o.x, o.y, o.k
        p.rect(x, y, 0.13 * k, 0.09 * k, o.colour)
        p.rect(x, y - 0.03 * k, 0.13 * k, 0.03 * k, (40, 120, 50))

    def _plate(self, p: _Painter, o: _Placed) -> None:
        x, y, k, c = o.x, o.y, o.k, o.colour
        p.disc(x, y, 0.115 * k, c)
        p.disc(x, y, 0.085 * k, _shade(c, 0.35, 255))

    def _tea_bag(self, p: _Painter, o: _Placed) -> None:
        x, y, k = o.x, o.y, o.k
        p.rect(x, y, 0.065 * k, 0.075 * k, o.colour)
        p.rect(x + 0.045 * k, y - 0.04 * k, 0.03 * k, 0.025 * k, (250, 250, 250))

    def _pen(self, p: _Painter, o: _Placed) -> None:
        x, y, k = o.x, o.y, o.k
        p.rect(x, y, 0.17 * k, 0.028 * k, o.colour)
        p.rect(x - 0.09 * k, y, 0.02 * k, 0.016 * k, DARK)

    def _sandwich(self, p: _Painter, o: _Placed) -> None:
        x, y, k = o.x, o.y, o.k
        p.rect(x, y, 0.14 * k, 0.14 * k, BREAD)
        p.rect(x, y, 0.14 * k, 0.04 * k, o.colour)

    def _contents(self, p: _Painter, oid: str, x: float, y: float, k: float, t: float) -> None:
        inside = [o.id for o in self.spec.objects if self.tl.state(o.id, t).holder == f"in:{oid}"]
        inside.sort(key=lambda o: self.tl.holder_t[o][-1] if len(self.tl.holder_t[o]) > 1 else -1.0)
        one = len(inside) == 1 or self.tl.kinds[oid] == "cup"
        for i, o in enumerate(inside):
            dx, dy = (0.0, 0.0) if one else _SLOTS[i % len(_SLOTS)]
            self._object(p, o, x + dx * k / 0.6, y + dy * k / 0.6, k, t)

    # -- frame ---------------------------------------------------------------------------------
    def frame(self, t: float) -> np.ndarray:
        """The frame at time ``t``: ``uint8 [size, size, 3]``."""
        spec, tl = self.spec, self.tl
        canvas = self.background.copy()
        p = _Painter(canvas, spec.size, self.margin)
        if spec.stain is not None:
            a = tl.stain(t)
            if a > 0.01:
                sx, sy, r = spec.stain
                for dx, dy, f in ((0, 0, 1.0), (0.03, 0.02, 0.7), (-0.035, 0.015, 0.6), (0.01, -0.03, 0.65)):
                    p.disc(sx + dx, sy + dy, r * f, STAIN, 0.85 * a)
        held = None
        order = sorted(spec.objects, key=lambda o: (o.kind != "drawer", not CONTAINERS.get(o.kind, False)
                                                    and o.kind not in ("plate", "book")))
        for o in order:
            st = tl.state(o.id, t)
            if st.holder == "table":
                self._object(p, o.id, st.x, st.y, OBJECT_SCALE, t)
            elif st.holder == "hand":
                held = o.id
        hx, hy = tl.hand(t)
        self._arm(p, hx, hy, held is not None)
        if held is not None:
            a = tl.current(t)
            tilted = a is not None and a.verb == "pour" and a.time <= t
            p.disc(hx + 0.03, hy - _HELD_LIFT + 0.035, 0.08, DARK, 0.3)
            self._object(p, held, hx, hy - _HELD_LIFT, OBJECT_SCALE * 1.1, t, tilted)
            for dx in (-0.03, 0.0, 0.03):
                p.disc(hx + dx, hy - 0.01, 0.014, _shade(SKIN, 0.9))
        if spec.style.fly:
            f, ph = self.fly
            p.disc(0.5 + 0.45 * math.sin(f[0] * t + ph[0]), 0.5 + 0.45 * math.sin(f[1] * t + ph[1]), 0.018, DARK)
        ph, speed = self.light
        gain = (1.0 + spec.style.light * math.sin(speed[0] * t + ph[0])
                + spec.style.light * ((self.xs - 0.5) * math.cos(speed[1] * t + ph[1])
                                      + (self.ys - 0.5) * math.sin(speed[1] * t + ph[2])))
        canvas *= gain
        f, ph = self.jitter
        amp = spec.style.jitter * spec.size
        dx = int(round(amp * (math.sin(f[0] * 2 * math.pi * t + ph[0])
                              + 0.5 * math.sin(f[1] * 2 * math.pi * t + ph[1]))))
        dy = int(round(amp * (math.sin(f[2] * 2 * math.pi * t + ph[2])
                              + 0.5 * math.sin(f[3] * 2 * math.pi * t + ph[3]))))
        m, s = self.margin, spec.size
        out = canvas[m + dy:m + dy + s, m + dx:m + dx + s]
        return np.clip(out, 0, 255).astype(np.uint8)

    def _arm(self, p: _Painter, hx: float, hy: float, holding: bool) -> None:
        sx, sy = 0.8 + 0.2 * (hx - 0.5), 1.25
        p.capsule(sx, sy, hx, hy + 0.03, 0.045, SKIN)
        p.capsule(sx, sy, sx + 0.55 * (hx - sx), sy + 0.55 * (hy - sy), 0.055, SLEEVE)
        p.disc(hx, hy, 0.048, SKIN)
        if not holding:  # open hand: fingers spread
            for ang in (-2.3, -1.85, -1.4, -0.95):
                p.disc(hx + 0.062 * math.cos(ang), hy + 0.062 * math.sin(ang), 0.015, SKIN)
            p.disc(hx - 0.055, hy + 0.015, 0.016, SKIN)


_DRAW = {"cup": _Scene._cup, "ball": _Scene._ball, "apple": _Scene._apple, "box": _Scene._box, "bowl": _Scene._bowl,
         "drawer": _Scene._drawer, "knife": _Scene._knife, "bottle": _Scene._bottle, "book": _Scene._book,
         "sponge": _Scene._sponge, "plate": _Scene._plate, "tea bag": _Scene._tea_bag, "pen": _Scene._pen,
         "sandwich": _Scene._sandwich}
"""How each kind of object is drawn."""


def render_video_frames(spec: VideoSpec) -> Iterator[np.ndarray]:
    """Frames of ``spec``: ``uint8 [size, size, 3]`` RGB, frame ``i`` at time ``i / fps``. A stream
    that chains tasks shows each part's table over its ``[start, end)`` (see
    :meth:`~.spec.VideoSpec.scenes`); the camera, light and fly run on across the cuts."""
    scenes = spec.scenes()
    k, scene = 0, _Scene(scenes[0][2])
    for i in range(spec.num_frames):
        t = i / spec.fps
        if k + 1 < len(scenes) and t >= scenes[k + 1][0]:  # a cut: the next part's table
            k = max(j for j, (start, _, _) in enumerate(scenes) if t >= start)
            scene = _Scene(scenes[k][2])
        yield scene.frame(t)
