"""Narration refinement: rule-based golden cases, LLM reply cleaning, fallback, prompt rendering."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from streamvlm.data.formats import Narration, NarrationVideo
from streamvlm.data.generate import (
    ChatBackend,
    Prompt,
    clean_refinement,
    narrations_by_uid,
    refine_narrations,
    rule_refine,
)
from streamvlm.data.generate.narration import base_form
from streamvlm.errors import DataError

GOLDEN = [
    ("#C C picks up the knife", "You pick up the knife."),
    ("#c C washes the plate", "You wash the plate."),
    ("#C C carries a box", "You carry a box."),
    ("#C C goes to the sink", "You go to the sink."),
    ("#C C does the dishes", "You do the dishes."),
    ("#C C has a cup", "You have a cup."),
    ("#C C is cutting an onion", "You are cutting an onion."),
    ("#C C touches the wall", "You touch the wall."),
    ("#C C fixes the box", "You fix the box."),
    ("#C C unties the rope", "You untie the rope."),
    ("#C C press the button", "You press the button."),
    ("#C C slowly opens the door.", "You slowly open the door."),
    ("#C C puts #unsure in the bag", "You put something in the bag."),
    ("#C C picks up the knife with C's right hand", "You pick up the knife with your right hand."),
    ("#C C cuts the onion while C talks", "You cut the onion while you talk."),
    ("#O man X hands C a cup", "Man X hands you a cup."),
    ("#O A woman talks with C", "A woman talks with you."),
    ("  #C   C  looks around  ", "You look around."),
]


@pytest.mark.parametrize(("raw", "expected"), GOLDEN)
def test_rule_refine_golden(raw, expected):
    assert rule_refine(raw) == expected


def test_base_form():
    words = ["picks", "washes", "catches", "passes", "carries", "ties", "goes", "Has", "cut"]
    assert [base_form(w) for w in words] == ["pick", "wash", "catch", "pass", "carry", "tie", "go", "Have", "cut"]


@pytest.mark.parametrize(("reply", "expected"), [
    ('"You pick up the knife."', "You pick up the knife."),
    ("Refined: you pick up the knife", "You pick up the knife."),
    ("You pick up the knife. Then you cut bread.", "You pick up the knife."),
    ("\n\nYou pick up the knife\nExplanation: ...", "You pick up the knife."),
    ("", None),
    ("#C C picks up the knife", None),
    ("C picks up the knife.", None),
    (" ".join(["word"] * 60), None),
])
def test_clean_refinement(reply, expected):
    assert clean_refinement(reply) == expected


class Scripted(ChatBackend):
    """Replies from a table keyed by the narration in the user message; records prompts."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table, self.prompts = table, []

    def identity(self):
        return {"backend": "scripted"}

    def iter_complete(self, prompts: Sequence[Prompt]) -> Iterator[tuple[int, str]]:
        self.prompts.extend(prompts)
        for i, p in enumerate(prompts):
            yield i, self.table[p[-1]["content"]]


def narration(uid: str, text: str, t: float = 0.0) -> Narration:
    return Narration(time=t, text=text, annotation_uid=uid)


def test_refine_with_llm_falls_back_to_rules_and_asks_each_text_once():
    items = [narration("a", "#C C picks up the knife"), narration("b", "#C C opens the tap"),
             narration("c", "#C C picks up the knife")]
    llm = Scripted({"#C C picks up the knife": '"You grab the knife."', "#C C opens the tap": ""})
    out = refine_narrations(items, llm, progress=False)
    assert out == {"a": "You grab the knife.", "b": "You open the tap.", "c": "You grab the knife."}
    assert len(llm.prompts) == 2
    system, user = llm.prompts[0]
    assert system["role"] == "system" and "#C" in system["content"]
    assert user == {"role": "user", "content": "#C C picks up the knife"}


def test_refine_without_backend_is_rule_based():
    assert refine_narrations([narration("a", "#C C goes out")], None) == {"a": "You go out."}


def test_duplicate_annotation_uid_is_a_data_error():
    videos = [NarrationVideo("v1", {"narration_pass_1": (narration("x", "#C C a"),)}),
              NarrationVideo("v2", {"narration_pass_2": (narration("x", "#C C b"),)})]
    with pytest.raises(DataError, match=r"n\.json, record v2/narration_pass_2, field 'annotation_uid'"):
        narrations_by_uid(videos, "n.json")
