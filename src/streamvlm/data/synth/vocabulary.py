"""The synthetic world's vocabulary: colours, object kinds, verbs and task recipes.

Everything here is static data. A *task* is a goal ("make tea") made of ordered *steps*
("pour hot water into the cup"); a step is a short list of *atomic actions* (one narration
each). Actions name objects by *role* ("cup", "kettle"); the planner binds roles to concrete
objects ("the red cup") per video.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Saturated, mutually distinct RGB colours (distinct from the table and the hand).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (20, 190, 40),
    "blue": (30, 70, 235),
    "yellow": (250, 225, 20),
    "purple": (150, 40, 200),
    "cyan": (20, 215, 225),
    "pink": (255, 90, 190),
    "white": (250, 250, 250),
    "black": (25, 25, 25),
}

#: Kinds of objects and their footprint radius (fraction of the frame side) used for layout;
#: the renderer draws objects at :data:`OBJECT_SCALE` times its base sizes to match.
KIND_RADIUS: dict[str, float] = {
    "cup": 0.086,
    "ball": 0.075,
    "apple": 0.081,
    "box": 0.138,
    "bowl": 0.127,
    "knife": 0.138,
    "bottle": 0.115,
    "book": 0.138,
    "sponge": 0.081,
    "plate": 0.138,
    "tea bag": 0.057,
    "pen": 0.103,
    "sandwich": 0.086,
    "drawer": 0.000,  # fixed at the far edge of the table, not laid out
}

OBJECT_SCALE = 1.15

#: Kinds that can hold other objects, and whether they have a lid/front to open first.
CONTAINERS: dict[str, bool] = {"box": True, "drawer": True, "bowl": False, "cup": False}

#: Kinds that may appear as background objects that take no part in the task.
DISTRACTOR_KINDS = ("cup", "ball", "apple", "book", "pen", "bottle", "plate", "sponge")


@dataclass(frozen=True)
class Verb:
    """An atomic action. ``narration``/``imperative`` are format strings over ``{obj}``,
    ``{target}`` and ``{tool}`` (object descriptions such as "red cup"); ``duration`` is the
    range of its length in seconds and ``contact`` the fraction of it spent reaching before the
    action visibly happens (the narration time)."""

    name: str
    label: str  # Ego4D-LTA-style verb label
    narration: str
    imperative: str
    duration: tuple[float, float]
    contact: float


VERBS: dict[str, Verb] = {v.name: v for v in (
    Verb("pick", "pick up", "picks up the {obj}", "pick up the {obj}", (1.5, 3.0), 0.6),
    Verb("put_down", "put down", "puts down the {obj}", "put down the {obj}", (1.5, 3.0), 0.65),
    Verb("put_in", "put in", "puts the {obj} in the {target}", "put the {obj} in the {target}", (1.8, 3.5), 0.65),
    Verb("take_out", "take out", "takes the {obj} out of the {target}", "take the {obj} out of the {target}",
         (1.8, 3.5), 0.6),
    Verb("open", "open", "opens the {obj}", "open the {obj}", (1.5, 3.0), 0.4),
    Verb("close", "close", "closes the {obj}", "close the {obj}", (1.5, 3.0), 0.4),
    Verb("stack", "stack", "stacks the {obj} on the {target}", "stack the {obj} on the {target}", (1.8, 3.5), 0.65),
    Verb("put_on", "put on", "puts the {obj} on the {target}", "put the {obj} on the {target}", (1.8, 3.5), 0.65),
    Verb("cut", "cut", "cuts the {obj} with the {tool}", "cut the {obj} with the {tool}", (3.0, 6.0), 0.25),
    Verb("wipe", "wipe", "wipes the table with the {tool}", "wipe the table with the {tool}", (3.0, 6.0), 0.25),
    Verb("pour", "pour", "pours water from the {tool} into the {target}",
         "pour water from the {tool} into the {target}", (2.5, 5.0), 0.3),
)}

#: Nouns of the LTA taxonomy: every kind plus the non-object nouns some verbs use.
NOUNS: tuple[str, ...] = tuple(KIND_RADIUS) + ("table", "water")


@dataclass(frozen=True)
class StepDef:
    """One step of a task: ``actions`` are ``(verb, obj_role, target_role, tool_role)``.
    Steps with the same non-zero ``group`` that stand next to each other may be done in any
    order; an ``optional`` step is done in about half the videos."""

    description: str
    actions: tuple[tuple[str, str | None, str | None, str | None], ...]
    optional: bool = False
    group: int = 0


@dataclass(frozen=True)
class TaskDef:
    """A goal-directed task. ``roles`` maps role names to kinds; ``inside`` says which roles
    start inside which container role; ``stain`` adds a dirty spot to wipe."""

    name: str
    goal: str
    category: str
    roles: dict[str, str]
    steps: tuple[StepDef, ...]
    inside: dict[str, str] | None = None
    stain: bool = False


def _a(verb: str, obj: str | None = None, target: str | None = None, tool: str | None = None):
    return (verb, obj, target, tool)


TASKS: tuple[TaskDef, ...] = (
    TaskDef("make_tea", "make tea", "cooking",
            {"cup": "cup", "kettle": "bottle", "tin": "box", "tea": "tea bag"},
            (StepDef("get a cup", (_a("pick", "cup"), _a("put_down", "cup"))),
             StepDef("pour hot water into the cup", (_a("pick", "kettle"), _a("pour", None, "cup", "kettle"),
                                                     _a("put_down", "kettle")), group=1),
             StepDef("put a tea bag in the cup", (_a("open", "tin"), _a("take_out", "tea", "tin"),
                                                  _a("put_in", "tea", "cup")), group=1),
             StepDef("close the tea box", (_a("close", "tin"),), optional=True)),
            inside={"tea": "tin"}),
    TaskDef("pack_lunch", "pack a lunch box", "food preparation",
            {"lunchbox": "box", "sandwich": "sandwich", "fruit": "apple", "drink": "bottle"},
            (StepDef("open the lunch box", (_a("open", "lunchbox"),)),
             StepDef("pack the sandwich", (_a("pick", "sandwich"), _a("put_in", "sandwich", "lunchbox")), group=1),
             StepDef("pack the fruit", (_a("pick", "fruit"), _a("put_in", "fruit", "lunchbox")), group=1),
             StepDef("pack a drink", (_a("pick", "drink"), _a("put_in", "drink", "lunchbox")), optional=True, group=1),
             StepDef("close the lunch box", (_a("close", "lunchbox"),)))),
    TaskDef("tidy_desk", "tidy the desk", "household",
            {"book1": "book", "book2": "book", "pen": "pen", "holder": "cup", "drawer": "drawer", "toy": "ball"},
            (StepDef("stack the books", (_a("pick", "book1"), _a("stack", "book1", "book2")), group=1),
             StepDef("put the pen in the holder", (_a("pick", "pen"), _a("put_in", "pen", "holder")), group=1),
             StepDef("put the toy in the drawer", (_a("open", "drawer"), _a("pick", "toy"),
                                                   _a("put_in", "toy", "drawer"), _a("close", "drawer"))))),
    TaskDef("cut_fruit", "cut fruit", "cooking",
            {"knife": "knife", "fruit": "apple", "plate": "plate", "bowl": "bowl"},
            (StepDef("put the fruit on the plate", (_a("pick", "fruit"), _a("put_on", "fruit", "plate"))),
             StepDef("cut the fruit", (_a("pick", "knife"), _a("cut", "fruit", None, "knife"),
                                       _a("put_down", "knife"))),
             StepDef("put the fruit in the bowl", (_a("pick", "fruit"), _a("put_in", "fruit", "bowl")),
                     optional=True))),
    TaskDef("clean_table", "clean the table", "household",
            {"sponge": "sponge", "cup": "cup", "bowl": "bowl"},
            (StepDef("move the cup away", (_a("pick", "cup"), _a("put_down", "cup")), optional=True),
             StepDef("wipe the table", (_a("pick", "sponge"), _a("wipe", None, None, "sponge"),
                                        _a("put_down", "sponge"))),
             StepDef("put the sponge in the bowl", (_a("pick", "sponge"), _a("put_in", "sponge", "bowl")),
                     optional=True)),
            stain=True),
    TaskDef("set_table", "set the table", "household",
            {"plate": "plate", "cup": "cup", "knife": "knife", "bowl": "bowl"},
            (StepDef("place the plate", (_a("pick", "plate"), _a("put_down", "plate"))),
             StepDef("place the cup", (_a("pick", "cup"), _a("put_down", "cup")), group=1),
             StepDef("place the knife", (_a("pick", "knife"), _a("put_down", "knife")), group=1),
             StepDef("put the bowl on the plate", (_a("pick", "bowl"), _a("put_on", "bowl", "plate")), optional=True))),
    TaskDef("store_books", "put the books away", "household",
            {"drawer": "drawer", "book1": "book", "book2": "book"},
            (StepDef("open the drawer", (_a("open", "drawer"),)),
             StepDef("put a book in the drawer", (_a("pick", "book1"), _a("put_in", "book1", "drawer"))),
             StepDef("put another book in the drawer", (_a("pick", "book2"), _a("put_in", "book2", "drawer"))),
             StepDef("close the drawer", (_a("close", "drawer"),)))),
    TaskDef("put_away_toys", "put away the toys", "household",
            {"box": "box", "ball1": "ball", "ball2": "ball", "ball3": "ball"},
            (StepDef("open the toy box", (_a("open", "box"),)),
             StepDef("put the first ball in the box", (_a("pick", "ball1"), _a("put_in", "ball1", "box"))),
             StepDef("put the second ball in the box", (_a("pick", "ball2"), _a("put_in", "ball2", "box"))),
             StepDef("put the third ball in the box", (_a("pick", "ball3"), _a("put_in", "ball3", "box")),
                     optional=True),
             StepDef("close the toy box", (_a("close", "box"),)))),
    TaskDef("prepare_breakfast", "prepare breakfast", "cooking",
            {"bowl": "bowl", "drawer": "drawer", "fruit": "apple", "milk": "bottle"},
            (StepDef("get a bowl", (_a("pick", "bowl"), _a("put_down", "bowl"))),
             StepDef("take an apple from the drawer", (_a("open", "drawer"), _a("take_out", "fruit", "drawer"),
                                                       _a("put_in", "fruit", "bowl"))),
             StepDef("close the drawer", (_a("close", "drawer"),), optional=True),
             StepDef("pour the milk", (_a("pick", "milk"), _a("pour", None, "bowl", "milk"), _a("put_down", "milk")))),
            inside={"fruit": "drawer"}),
)

TASKS_BY_NAME: dict[str, TaskDef] = {t.name: t for t in TASKS}


def step_taxonomy() -> list[tuple[int, str, str]]:
    """Every distinct ``(step_id, task_name, step_description)``; ids count from 1 in task order."""
    out = []
    for task in TASKS:
        for step in task.steps:
            out.append((len(out) + 1, task.name, step.description))
    return out
