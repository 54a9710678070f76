"""Downstream benchmarks: COIN top-1 accuracy and Ego4D LTA edit distance (ED@Z).

As upstream, the model watches the clip, reads the question and **generates** its answer (greedy
for COIN, beam search returning K sequences for LTA); the text is then matched to the gold:

* ``coin_step`` / ``coin_task`` / ``coin_next``: top-1 accuracy, the whole answer equal to the
  gold text (after collapsing whitespace);
* ``coin_procedure`` / ``coin_procedure_goal``: one step per line; accuracy = gold steps whose
  line is predicted right at the same index / all gold steps (pooled over samples);
* ``lta``: the predicted lines ``"1. Verb noun."`` become actions; ED@Z = min over the K
  sequences of ``levenshtein(pred[:Z], gold[:Z]) / Z`` for verbs, nouns and actions, averaged
  over samples (the Ego4D LTA metric).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from tqdm import tqdm

from ..model.conversation import Turn
from .stream_eval import frame_kwargs

if TYPE_CHECKING:
    from ..model.vlm import StreamVLM

COIN_TASKS = ("coin_step", "coin_task", "coin_next", "coin_procedure", "coin_procedure_goal")

TASKS = COIN_TASKS + ("lta",)
LTA_Z = 20
_NUMBERED = re.compile(r"^\s*\d+\s*[.)]\s*")


@dataclass
class DownstreamSample:
    """A question about a clip: ``turns`` end with the question (no answer)."""

    task: str
    turns: Sequence[Turn]
    frames: Tensor | None
    answer: str = ""
    future_verbs: list[str] = field(default_factory=list)
    future_nouns: list[str] = field(default_factory=list)
    key: str = ""


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of cost 1) between sequences."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def fit_length(sequence: Sequence[Hashable], z: int, filler: Hashable) -> list[Hashable]:
    """Truncate to ``z`` items; pad a short one by repeating its last item (``filler`` if empty)."""
    out = list(sequence[:z])
    return out + [out[-1] if out else filler] * (z - len(out))


def lta_edit_distance(predictions: Sequence[Sequence[Hashable]], gold: Sequence[Hashable], z: int = LTA_Z) -> float:
    """ED@Z of one sample: min over the K predicted sequences of ``ED(pred[:Z], gold[:Z]) / Z``,
    each prediction fitted to Z items (see :func:`fit_length`); Z shrinks to a shorter gold."""
    z = min(z, len(gold))
    if z == 0:
        raise ValueError("ED@Z of an empty gold sequence")
    return min(edit_distance(fit_length(p, z, None), list(gold[:z])) / z for p in predictions)


def normalize(text: str) -> str:
    return " ".join(text.split())


def answer_matches(prediction: str, gold: str) -> bool:
    return normalize(prediction) == normalize(gold)


def procedure_matches(prediction: str, gold: str) -> tuple[int, int]:
    """(gold steps predicted right at their line index, gold steps); one step per line."""
    predicted = [normalize(line) for line in prediction.strip().split("\n")]
    steps = [normalize(line) for line in gold.strip().split("\n")]
    return sum(i < len(predicted) and predicted[i] == step for i, step in enumerate(steps)), len(steps)


def parse_actions(text: str) -> list[str]:
    """Numbered lines (``"1. Cut onion."``) -> lower-cased actions without number and final dot."""
    actions = []
    for line in text.strip().split("\n"):
        match = _NUMBERED.match(line)
        if match:
            action = normalize(line[match.end():]).lower().rstrip(".").strip()
            if action:
                actions.append(action)
    return actions


def split_action(action: str, verbs: Iterable[str]) -> tuple[str, str]:
    """``"take off shoe"`` -> (verb, noun): the longest known verb the action starts with, else its
    first word."""
    for verb in sorted(verbs, key=len, reverse=True):
        if action == verb or action.startswith(verb + " "):
            return verb, action[len(verb):].strip()
    head, _, rest = action.partition(" ")
    return head, rest


def answer_prompt(renderer, turns: Sequence[Turn]) -> list[int]:
    """Token ids of a conversation ending with a question, up to and including the assistant's
    opening (``...]\nAssistant:``): the model continues with its answer."""
    rendered = renderer.render(list(turns) + [Turn("assistant", "")])
    return rendered.input_ids[:rendered.spans[-1].reply_start]


def generate_answers(model: StreamVLM, turns: Sequence[Turn], frames: Tensor | None, *, max_new_tokens: int,
                     num_beams: int = 1) -> list[str]:
    """The model's answers to a conversation ending with a question: the prompt is the rendered
    conversation up to the assistant's opening; ``num_beams`` sequences come back (greedy for 1)."""
    input_ids = torch.tensor([answer_prompt(model.renderer, turns)], dtype=torch.long, device=model.device)
    kwargs = frame_kwargs(frames)
    frame_embeds = None
    if "frame_tokens" in kwargs:
        frame_embeds = model.project_frames(kwargs["frame_tokens"])
    elif "pixel_values" in kwargs:
        frame_embeds = model.embed_frames(kwargs["pixel_values"])
    embeds = model.build_inputs_embeds(input_ids, frame_embeds)
    ids = model.token_ids
    output = model.language_model.generate(
        inputs_embeds=embeds, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
        do_sample=False, num_beams=num_beams, num_return_sequences=num_beams,
        eos_token_id=ids.eos_id, pad_token_id=ids.pad_id,
    )
    return [model.tokenizer.decode(row, skip_special_tokens=True).strip() for row in output]


def evaluate_downstream(model: StreamVLM, samples: Iterable[DownstreamSample], *, lta_verbs: Iterable[str] = (),
                        coin_max_new_tokens: int = 200, lta_max_new_tokens: int = 512, lta_beams: int = 5,
                        progress: bool = False, total: int | None = None) -> dict[str, float | dict[str, int]]:
    """Scores of every task present: ``coin_*`` accuracies, ``lta_verb_ed`` / ``lta_noun_ed`` /
    ``lta_action_ed``, and ``downstream_counts`` (samples per task). ``lta_verbs`` is the verb
    vocabulary used to split predicted actions into verb and noun (see :func:`split_action`);
    samples are consumed one at a time."""
    known_verbs = sorted({v.lower() for v in lta_verbs})
    correct: dict[str, int] = defaultdict(int)
    counted: dict[str, int] = defaultdict(int)
    eds: dict[str, list[float]] = defaultdict(list)
    samples_per_task: dict[str, int] = defaultdict(int)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with torch.inference_mode():
            for s in tqdm(samples, total=total, desc="downstream", unit="sample", disable=not progress):
                samples_per_task[s.task] += 1
                if s.task == "lta":
                    texts = generate_answers(model, s.turns, s.frames, max_new_tokens=lta_max_new_tokens,
                                             num_beams=lta_beams)
                    pairs = [[split_action(a, known_verbs) for a in parse_actions(t)] for t in texts]
                    verbs = [v.lower() for v in s.future_verbs]
                    nouns = [n.lower() for n in s.future_nouns]
                    eds["lta_verb_ed"].append(lta_edit_distance([[v for v, _ in p] for p in pairs], verbs))
                    eds["lta_noun_ed"].append(lta_edit_distance([[n for _, n in p] for p in pairs], nouns))
                    eds["lta_action_ed"].append(lta_edit_distance(pairs, list(zip(verbs, nouns))))
                    continue
                (text,) = generate_answers(model, s.turns, s.frames, max_new_tokens=coin_max_new_tokens)
                if s.task in ("coin_procedure", "coin_procedure_goal"):
                    right, steps = procedure_matches(text, s.answer)
                else:
                    right, steps = int(answer_matches(text, s.answer)), 1
                correct[s.task] += right
                counted[s.task] += steps
    finally:
        model.train(was_training)
    out: dict[str, float | dict[str, int]] = {task: correct[task] / counted[task] for task in counted if counted[task]}
    out.update({name: sum(values) / len(values) for name, values in eds.items()})
    out["downstream_counts"] = dict(samples_per_task)
    return out
