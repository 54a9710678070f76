"""Plan one synthetic video: pick a task, lay out the table, order the steps, time the actions.
A live-like stream (:func:`plan_stream`) chains such task instances with idle stretches.

:func:`plan_video` is a pure function of ``(seed, index, options)``: the same arguments always give
the same :class:`~.spec.VideoSpec`. Each video draws from its own random streams
(``numpy.random.default_rng([seed, index, stream])``), so videos can be planned in any order or in
parallel, and a video's split does not depend on how many videos are generated.
"""

from __future__ import annotations

import numpy as np

from .spec import LiveOptions, RenderStyle, Split, SynthAction, SynthObject, SynthPart, SynthStep, VideoSpec
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
_PLAN, _SPLIT, _TASK, _STREAM, _LIVE = 0, 1, 2, 3, 4

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


def _plan_task(task: TaskDef, rng: np.random.Generator, duration: float, first_id: int = 0):
    """One task instance laid out and timed over ``duration`` seconds, as a clip of that length:
    ``(objects, steps, stain, plan, times)`` (see :func:`_simulate` and :func:`_timing`). Object
    ids count from ``o<first_id>``."""
    objects, top = _make_objects(task, rng)
    if first_id:
        names = {o.id: f"o{first_id + i}" for i, o in enumerate(objects)}
        for o in objects:
            o.id, o.inside = names[o.id], names.get(o.inside) if o.inside else None
    steps = _add_interludes(_choose_steps(task, rng), objects, duration, rng)
    stain = None
    if task.stain:
        x, y = _free_spot(rng, 0.09, [(o.x, o.y, KIND_RADIUS[o.kind]) for o in objects if o.kind != "drawer"], top)
        stain = (x, y, 0.08)
    plan = _simulate(steps, objects, top, rng, stain)
    times = _timing([p[1] for p in plan], [p[0] for p in plan], duration, rng)
    return objects, steps, stain, plan, times


def _assemble(task: TaskDef, steps: list[StepDef | None], objects: list[SynthObject], plan, times,
              first_action: int = 0, first_step: int = 0) -> tuple[list[SynthAction], list[SynthStep]]:
    """The actions and goal steps of one task instance; action and step indices start at
    ``first_action`` and ``first_step`` (the video's earlier task instances)."""
    ids = {(t, d): i for i, t, d in step_taxonomy()}
    objs = {o.id: o for o in objects}
    actions = []
    for (si, verb, obj, target, tool, x, y), (start, when, end) in zip(plan, times):
        narration, imperative, noun = _describe(verb, objs, obj, target, tool)
        actions.append(SynthAction(verb, obj, target, tool, start, when, end, x, y, si, narration, imperative, noun))
    out_steps = []
    for si, step in enumerate(steps):
        members = [i for i, a in enumerate(actions) if a.step == si]
        if not members or not step.description:  # interludes belong to no step
            continue
        out_steps.append(SynthStep(first_step + len(out_steps), ids[(task.name, step.description)],
                                   step.description, actions[members[0]].start, actions[members[-1]].end,
                                   step.optional, [first_action + i for i in members]))
    for a in actions:  # action.step indexes the kept goal steps, -1 for off-task actions
        a.step = -1
    for s in out_steps:
        for i in s.actions:
            actions[i - first_action].step = s.index
    return actions, out_steps


def _style(rng: np.random.Generator) -> RenderStyle:
    base = np.array([170, 140, 105]) + rng.integers(-15, 16, 3)
    return RenderStyle(seed=int(rng.integers(2**31)), jitter=round(float(rng.uniform(0.003, 0.01)), 4),
                       light=round(float(rng.uniform(0.04, 0.12)), 4), fly=bool(rng.random() < 0.7),
                       table=tuple(int(c) for c in base))


def is_live(seed: int, index: int, live: LiveOptions | None) -> bool:
    """Whether video ``index`` of world ``seed`` is a live-like stream (a pure function of
    ``(seed, index, live.live_fraction)``)."""
    if live is None or live.live_fraction <= 0:
        return False
    return bool(np.random.default_rng([seed, index, _LIVE]).random() < live.live_fraction)


def plan_video(seed: int, index: int, *, duration: float = 60.0, fps: float = 8.0, size: int = 96,
               split: Split | None = None, live: LiveOptions | None = None) -> VideoSpec:
    """Plan video ``index`` of world ``seed``; ``split`` overrides the seed-derived split. With
    ``live``, the videos :func:`is_live` picks are live-like streams (:func:`plan_stream`)."""
    if is_live(seed, index, live):
        return plan_stream(seed, index, live, duration=live.live_duration or duration, fps=fps, size=size,
                           split=split)
    rng = np.random.default_rng([seed, index, _PLAN])
    task = task_of(seed, index)
    objects, steps, stain, plan, times = _plan_task(task, rng, duration)
    actions, out_steps = _assemble(task, steps, objects, plan, times)
    return VideoSpec(uid=video_uid(seed, index), index=index, seed=seed, split=split or split_of(seed, index),
                     task=task.name, goal=task.goal, category=task.category, duration=float(duration),
                     fps=float(fps), size=int(size), objects=objects, actions=actions, steps=out_steps,
                     style=_style(rng), stain=stain)


# ---------------------------------------------------------------------------- live-like streams
#: Each task of a stream is paced like a clip of this many seconds (the clips a default world
#: holds), then its lead-in and tail are replaced by the stream's idle stretches.
TASK_SECONDS = 60.0
#: How far before the end of a stream its last action must end (as in clips).
_END_MARGIN = 0.2


def _idle_length(rng: np.random.Generator, live: LiveOptions) -> float:
    lo, hi = live.idle_min, live.idle_max
    if live.idle_distribution == "uniform":
        return round(float(rng.uniform(lo, hi)), 3)
    return round(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))), 3)


def _english_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _stream_task(seed: int, index: int, k: int, task: TaskDef, first_id: int, live: LiveOptions):
    """Task instance ``k`` of a stream, timed from 0 like a clip of :data:`TASK_SECONDS`, with idle
    stretches added at some step boundaries where the hand is empty. Returns ``(objects, steps,
    stain, plan, times, idle)``; every action fits (the clip is lengthened if it did not)."""
    for seconds in (TASK_SECONDS, 1.5 * TASK_SECONDS, 3 * TASK_SECONDS):
        rng = np.random.default_rng([seed, index, _STREAM, 1, k, int(seconds)])
        objects, steps, stain, plan, times = _plan_task(task, rng, seconds, first_id)
        if len(times) == len(plan):
            break
    held = False
    shift, idle, out = 0.0, [], []
    for i, (p, (start, when, end)) in enumerate(zip(plan, times)):
        if i and p[0] != plan[i - 1][0] and not held and rng.random() < live.idle_within:
            length = _idle_length(rng, live)
            begin = out[-1][2]
            idle.append((begin, round(begin + length, 3)))
            shift += length
        out.append((round(start + shift, 3), round(when + shift, 3), round(end + shift, 3)))
        verb = p[1]
        held = verb in ("pick", "take_out") or (held and verb not in ("put_down", "put_in", "stack", "put_on"))
    return objects, steps, stain, plan, out, idle


def plan_stream(seed: int, index: int, live: LiveOptions, *, duration: float = 600.0, fps: float = 8.0,
                size: int = 96, split: Split | None = None) -> VideoSpec:
    """Plan video ``index`` of world ``seed`` as a live-like stream of ``duration`` seconds: task
    instances one after another (the first is :func:`task_of`, each next one a different task),
    each paced like a clip, separated by idle stretches drawn from ``live`` (and with some inside
    them, at step boundaries), until ``live.tasks_per_video`` tasks are done or the next one no
    longer fits; the rest of the video is idle. The scene cuts to the next task's table in the
    middle of the idle stretch between two tasks. A pure function of ``(seed, index, live,
    duration)``, and a longer stream (or more tasks) continues a shorter one of the same video."""
    main = np.random.default_rng([seed, index, _STREAM])
    style = _style(np.random.default_rng([seed, index, _STREAM, 0]))
    limit = duration - _END_MARGIN
    objects: list[SynthObject] = []
    actions: list[SynthAction] = []
    steps: list[SynthStep] = []
    parts: list[SynthPart] = []
    idle: list[tuple[float, float]] = []
    lead = _idle_length(main, live) if main.random() < 0.5 else 0.0
    task, cursor, k = task_of(seed, index), 0.0, 0
    while live.tasks_per_video == 0 or k < live.tasks_per_video:
        if k:
            others = [t for t in TASKS if t.name != task.name]
            task = others[int(main.integers(len(others)))]
            pause = _idle_length(main, live)
        objs, stepdefs, stain, plan, times, inner = _stream_task(seed, index, k, task, len(objects), live)
        start = 0.0
        if k == 0:
            offset = lead if lead + times[-1][2] <= limit else 0.0  # no idle lead-in if it does not fit
            if times[-1][2] > limit:  # a short video: one task paced as a clip of its length, cut off if need be
                objs, stepdefs, stain, plan, times = _plan_task(
                    task, np.random.default_rng([seed, index, _STREAM, 2]), duration)
                inner = []
            if offset:
                idle.append((0.0, offset))
        else:
            offset = cursor + pause
            if offset + times[-1][2] > limit:
                break
            idle.append((cursor, round(cursor + pause, 3)))
            start = parts[-1].end = round(cursor + pause / 2, 3)  # the table is re-laid mid-pause
        times = [tuple(round(offset + t, 3) for t in triple) for triple in times]
        idle += [(round(offset + a, 3), round(offset + b, 3)) for a, b in inner]
        new_actions, new_steps = _assemble(task, stepdefs, objs, plan, times, len(actions), len(steps))
        parts.append(SynthPart(task.name, task.goal, task.category, start, float(duration), [o.id for o in objs],
                               stain))
        objects += objs
        actions += new_actions
        steps += new_steps
        cursor = times[-1][2] if times else 0.0
        k += 1
    names = list(dict.fromkeys(p.task for p in parts))
    goals = list(dict.fromkeys(p.goal for p in parts))
    categories = list(dict.fromkeys(p.category for p in parts))
    return VideoSpec(uid=video_uid(seed, index), index=index, seed=seed, split=split or split_of(seed, index),
                     task="+".join(names), goal=_english_list(goals), category=", ".join(categories),
                     duration=float(duration), fps=float(fps), size=int(size), objects=objects, actions=actions,
                     steps=steps, style=style, stain=None, parts=parts, idle=idle)
