"""Plan one synthetic video: pick a task, lay out the table, order the steps, time the actions.

:func:`plan_video` is a pure function of ``(seed, index, options)``: the same arguments always give
the same :class:`~.spec.VideoSpec`. Each video draws from its own random streams
(``numpy.random.default_rng([seed, index, stream])``), so videos can be planned in any order or in
parallel, and a video's split does not depend on how many videos are generated.
"""

from __future__ import annotations

import numpy as np

from .spec import RenderStyle, Split, SynthAction, SynthObject, SynthStep, VideoSpec
from .vocabulary import (
    COLOURS,
    CONTAINERS,
    DISTRACTOR_KINDS,
    KIND_RADIUS,
    TASKS,
    VERBS,
    StepDef,
    TaskDef,
    step_taxonomy,
)

# Independent random streams of one video.
_PLAN, _SPLIT, _TASK = 0, 1, 2

SPLIT_RATIOS = {"train": 0.8, "val": 0.1, "test": 0.1}

#: The hand rests here (bottom of the frame) when idle.
HAND_HOME = (0.55, 0.93)
#: Objects are laid out inside this box (x0, y0, x1, y1); the drawer (if any) adds a band at the top.
_TABLE = (0.04, 0.06, 0.96, 0.82)
_DRAWER_BAND = 0.32
#: Where the drawer interior shows once open, below its front at the top edge.
DRAWER_DEPTH = 0.22


def video_uid(seed: int, index: int) -> str:
    """Stable id of video ``index`` of the world generated with ``seed``."""
    return f"synth_s{seed}_{index:05d}"


def split_of(seed: int, index: int) -> Split:
    """The split of video ``index`` (80/10/10), a pure function of ``(seed, index)``."""
    u = np.random.default_rng([seed, index, _SPLIT]).random()
    if u < SPLIT_RATIOS["train"]:
        return "train"
    return "val" if u < SPLIT_RATIOS["train"] + SPLIT_RATIOS["val"] else "test"


def task_of(seed: int, index: int) -> TaskDef:
    """Tasks are balanced: every block of ``len(TASKS)`` consecutive videos has each task once."""
    block, pos = divmod(index, len(TASKS))
    perm = np.random.default_rng([seed, block, _TASK]).permutation(len(TASKS))
    return TASKS[int(perm[pos])]


def _choose_steps(task: TaskDef, rng: np.random.Generator) -> list[StepDef]:
    """Drop optional steps at random and shuffle runs of neighbouring steps of one group."""
    kept = [s for s in task.steps if not s.optional or rng.random() < 0.5]
    out: list[StepDef] = []
    i = 0
    while i < len(kept):
        j = i + 1
        if kept[i].group:
            while j < len(kept) and kept[j].group == kept[i].group:
                j += 1
        run = kept[i:j]
        out.extend(run[k] for k in rng.permutation(len(run)))
        i = j
    return out


class _Table:
    """Where every object is while the task is simulated (the planner's view of the scene)."""

    def __init__(self, objects: list[SynthObject]) -> None:
        self.objects = {o.id: o for o in objects}
        self.pos = {o.id: (o.x, o.y) for o in objects}
        self.holder = {o.id: (f"in:{o.inside}" if o.inside else "table") for o in objects}
        self.opened = {o.id: False for o in objects if CONTAINERS.get(o.kind)}
        self.held: str | None = None

    def where(self, oid: str) -> tuple[float, float]:
        """Centre of object ``oid`` (inside a drawer: the middle of its open interior)."""
        h = self.holder[oid]
        if h.startswith(("in:", "on:")):
            parent = h[3:]
            if self.objects[parent].kind == "drawer":
                return self.pos[parent][0], self.pos[parent][1] + DRAWER_DEPTH * 0.5
            return self.where(parent)
        return self.pos[oid]

    def occupied(self) -> list[tuple[float, float, float]]:
        return [(*self.pos[o], KIND_RADIUS[self.objects[o].kind]) for o in self.objects
                if self.holder[o] == "table" and self.objects[o].kind != "drawer"]


def _free_spot(rng: np.random.Generator, radius: float, occupied: list[tuple[float, float, float]],
               top: float, centre: bool = False) -> tuple[float, float]:
    """A random point where a disc of ``radius`` overlaps nothing (slack grows if crowded)."""
    x0, y0, x1, y1 = _TABLE
    y0 = max(y0, top)
    if centre:  # put-downs prefer the middle of the table, the work area
        x0, x1 = max(x0, 0.2), min(x1, 0.8)
    best, best_gap = None, -np.inf
    for _ in range(300):
        x = rng.uniform(x0 + radius, x1 - radius)
        y = rng.uniform(y0 + radius, y1 - radius)
        gap = min((np.hypot(x - ox, y - oy) - r - radius for ox, oy, r in occupied), default=1.0)
        if gap > 0.01:
            return round(float(x), 4), round(float(y), 4)
        if gap > best_gap:
            best, best_gap = (x, y), gap
    return round(float(best[0]), 4), round(float(best[1]), 4)


def _make_objects(task: TaskDef, rng: np.random.Generator) -> tuple[list[SynthObject], float]:
    """Objects for the task's roles plus 1-2 background objects, laid out without overlap.
    Returns the objects and the top of the free table area (below the drawer, if any)."""
    colours = list(COLOURS)
    used: set[tuple[str, str]] = set()

    def new(kind: str, role: str | None, n: int) -> SynthObject:
        choices = [c for c in colours if (c, kind) not in used]
        colour = choices[int(rng.integers(len(choices)))]
        used.add((colour, kind))
        return SynthObject(id=f"o{n}", kind=kind, colour=colour, x=0.0, y=0.0, role=role)

    objects = [new(kind, role, i) for i, (role, kind) in enumerate(task.roles.items())]
    for _ in range(int(rng.integers(1, 3))):
        objects.append(new(str(rng.choice(DISTRACTOR_KINDS)), None, len(objects)))
    by_role = {o.role: o for o in objects if o.role}
    top = _TABLE[1]
    for o in objects:
        if o.kind == "drawer":
            o.x, o.y = round(float(rng.uniform(0.3, 0.7)), 4), 0.0
            top = _DRAWER_BAND
    occupied: list[tuple[float, float, float]] = []
    for o in sorted(objects, key=lambda o: -KIND_RADIUS[o.kind]):
        if o.kind == "drawer" or (task.inside and o.role in task.inside):
            continue
        r = KIND_RADIUS[o.kind]  # big objects first so the layout rarely gets crowded
        o.x, o.y = _free_spot(rng, r, occupied, top)
        occupied.append((o.x, o.y, r))
    for role, container in (task.inside or {}).items():
        obj, box = by_role[role], by_role[container]
        obj.inside = box.id
        obj.x, obj.y = box.x, box.y
    return objects, top


def _describe(verb: str, objs: dict[str, SynthObject], obj: str | None, target: str | None,
              tool: str | None) -> tuple[str, str, str]:
    d = {k: (objs[v].description if v else "") for k, v in (("obj", obj), ("target", target), ("tool", tool))}
    v = VERBS[verb]
    noun = {"wipe": "table", "pour": "water"}.get(verb) or objs[obj].kind
    return "#C C " + v.narration.format(**d), v.imperative.format(**d), noun


def _simulate(steps: list[StepDef], objects: list[SynthObject], top: float,
              rng: np.random.Generator, stain: tuple[float, float, float] | None):
    """Walk through the steps (roles or object ids); returns ``[(step_index, verb, obj, target, tool, x, y)]`` where
    ``(x, y)`` is where the hand acts. Raises AssertionError if a recipe is inconsistent."""
    by_role = {o.role: o.id for o in objects if o.role} | {o.id: o.id for o in objects}
    table = _Table(objects)
    out = []
    for si, step in enumerate(steps):
        for verb, r_obj, r_target, r_tool in step.actions:
            obj, target, tool = (by_role[r] if r else None for r in (r_obj, r_target, r_tool))
            if verb in ("pick", "take_out"):
                assert table.held is None
                assert (table.holder[obj] == "table" or table.holder[obj].startswith("on:") if verb == "pick"
                        else table.holder[obj] == f"in:{target}")
                x, y = table.where(obj)
                table.holder[obj], table.held = "hand", obj
            elif verb in ("put_down", "put_in", "stack", "put_on"):
                assert table.held == obj
                if verb == "put_down":
                    x, y = _free_spot(rng, KIND_RADIUS[table.objects[obj].kind], table.occupied(), top,
                                      centre=True)
                    table.pos[obj], table.holder[obj] = (x, y), "table"
                else:
                    assert verb != "put_in" or table.opened.get(target, True)
                    x, y = table.where(target)
                    if table.objects[target].kind == "drawer":
                        y = table.pos[target][1] + DRAWER_DEPTH * 0.5
                    table.holder[obj] = ("in:" if verb == "put_in" else "on:") + target
                table.held = None
            elif verb in ("open", "close"):
                assert table.held is None and table.opened[obj] == (verb == "close")
                x, y = table.where(obj)
                if table.objects[obj].kind == "drawer":
                    y = 0.04 + (0.0 if verb == "open" else DRAWER_DEPTH)
                table.opened[obj] = verb == "open"
            elif verb == "cut":
                assert table.held == tool
                x, y = table.where(obj)
            elif verb == "wipe":
                assert table.held == tool and stain is not None
                x, y = stain[0], stain[1]
            elif verb == "pour":
                assert table.held == tool
                x, y = table.where(target)
                x = x + 0.1 if x < 0.6 else x - 0.1
            else:
                raise AssertionError(verb)
            out.append((si, verb, obj, target, tool, round(float(x), 4), round(float(y), 4)))
    return out


def _timing(verbs: list[str], step_of: list[int], duration: float, rng: np.random.Generator):
    """Start, narration time and end of each action, spread over ``duration`` seconds with idle
    gaps (longer between steps, sometimes a long pause). Actions that do not fit are dropped."""
    n = len(verbs)
    durs = np.array([rng.uniform(*VERBS[v].duration) for v in verbs])
    between = np.array([i == 0 or step_of[i] != step_of[i - 1] for i in range(n)])
    gaps = np.where(between, rng.uniform(1.0, 3.0, n), rng.uniform(0.2, 0.8, n))
    gaps[0] = rng.uniform(0.5, 2.5)
    if between[1:].any() and rng.random() < 0.5:
        gaps[int(rng.choice(np.flatnonzero(between[1:]))) + 1] += rng.uniform(3.0, 7.0)
    tail = rng.uniform(0.5, 1.5)
    spare = duration - tail - durs.sum() - gaps.sum()
    if spare > 0:  # lengthen actions a little, then the pauses (mostly those between steps)
        grow = np.minimum(np.array([VERBS[v].duration[1] * 1.2 for v in verbs]) - durs, durs * 0.3)
        take = min(1.0, spare / max(grow.sum(), 1e-9))
        durs += grow * take
        spare -= (grow * take).sum()
        weights = rng.dirichlet(np.where(between, 4.0, 0.5).tolist() + [2.0])
        gaps += spare * weights[:n]
    else:  # halve the pauses at most; what still does not fit is cut off, like a clip of a longer video
        gaps = np.maximum(gaps * 0.5, gaps + spare * gaps / gaps.sum())
    out, t = [], 0.0
    for i, v in enumerate(verbs):
        start = t + gaps[i]
        end = start + durs[i]
        if end > duration - 0.2:
            break
        out.append((round(float(start), 3), round(float(start + VERBS[v].contact * durs[i]), 3),
                    round(float(end), 3)))
        t = end
    return out


def _add_interludes(steps: list[StepDef], objects: list[SynthObject], duration: float,
                    rng: np.random.Generator) -> list[StepDef | None]:
    """Insert off-task moves of background objects between steps (``None`` marks none), so that
    narrations also happen outside goal steps, as in Ego4D, and long videos stay busy."""
    background = [o for o in objects if o.role is None and o.kind != "drawer"]
    busy = sum(np.mean(VERBS[a[0]].duration) + 1.5 for s in steps for a in s.actions)
    count = int(np.clip(round((0.7 * duration - busy) / 7.0), 0, 3)) if background else 0
    slots = sorted(rng.integers(0, len(steps) + 1, count).tolist())
    out: list[StepDef | None] = []
    for i, step in enumerate(steps + [None]):
        for _ in range(slots.count(i)):
            o = background[int(rng.integers(len(background)))]
            out.append(StepDef("", (("pick", o.id, None, None), ("put_down", o.id, None, None))))
        if step is not None:
            out.append(step)
    return out


def plan_video(seed: int, index: int, *, duration: float = 60.0, fps: float = 8.0, size: int = 96,
               split: Split | None = None) -> VideoSpec:
    """Plan video ``index`` of world ``seed``; ``split`` overrides the seed-derived split."""
    rng = np.random.default_rng([seed, index, _PLAN])
    task = task_of(seed, index)
    objects, top = _make_objects(task, rng)
    steps = _add_interludes(_choose_steps(task, rng), objects, duration, rng)
    stain = None
    if task.stain:
        x, y = _free_spot(rng, 0.09, [(o.x, o.y, KIND_RADIUS[o.kind]) for o in objects if o.kind != "drawer"], top)
        stain = (x, y, 0.08)
    plan = _simulate(steps, objects, top, rng, stain)
    times = _timing([p[1] for p in plan], [p[0] for p in plan], duration, rng)
    objs = {o.id: o for o in objects}
    actions = []
    for (si, verb, obj, target, tool, x, y), (start, when, end) in zip(plan, times):
        narration, imperative, noun = _describe(verb, objs, obj, target, tool)
        actions.append(SynthAction(verb, obj, target, tool, start, when, end, x, y, si, narration, imperative, noun))
    ids = {(t, d): i for i, t, d in step_taxonomy()}
    out_steps = []
    for si, step in enumerate(steps):
        members = [i for i, a in enumerate(actions) if a.step == si]
        if not members or not step.description:  # interludes belong to no step
            continue
        out_steps.append(SynthStep(len(out_steps), ids[(task.name, step.description)], step.description,
                                   actions[members[0]].start, actions[members[-1]].end, step.optional, members))
    for a in actions:  # action.step indexes the kept goal steps, -1 for off-task actions
        a.step = -1
    for new_index, s in enumerate(out_steps):
        for i in s.actions:
            actions[i].step = new_index
    base = np.array([170, 140, 105]) + rng.integers(-15, 16, 3)
    style = RenderStyle(seed=int(rng.integers(2**31)), jitter=round(float(rng.uniform(0.003, 0.01)), 4),
                        light=round(float(rng.uniform(0.04, 0.12)), 4), fly=bool(rng.random() < 0.7),
                        table=tuple(int(c) for c in base))
    return VideoSpec(uid=video_uid(seed, index), index=index, seed=seed, split=split or split_of(seed, index),
                     task=task.name, goal=task.goal, category=task.category, duration=float(duration),
                     fps=float(fps), size=int(size), objects=objects, actions=actions, steps=out_steps,
                     style=style, stain=stain)
