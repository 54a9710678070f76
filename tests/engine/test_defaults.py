"""Stream defaults are resolved in one place: fps, KV policy (its sink from the model's own layout)
and decision settings, for every front end."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from streamvlm.engine import GenerationConfig
from streamvlm.engine.defaults import resolve_stream
from streamvlm.engine.kv_policy import SINK_FRAMES
from streamvlm.engine.layout import LayoutIds
from streamvlm.engine.options import StreamOptions
from tests.helpers import REPO, tiny_model

SRC = REPO / "src" / "streamvlm"


def test_what_the_options_leave_out_is_the_models_own():
    model = tiny_model(max_positions=512)
    model.config.frame_fps = 3.0
    setup = resolve_stream(model)
    start = len(LayoutIds.from_model(model).start)
    assert setup.fps == 3.0 and setup.generation == GenerationConfig() and not setup.realtime
    assert setup.kv_policy.max_tokens == 512  # the model's context (it has no stream_kv_budget)
    assert setup.kv_policy.sink_tokens == start + SINK_FRAMES * (model.config.tokens_per_frame + 1)
    given = resolve_stream(model, StreamOptions(fps=5.0, kv_budget=0, realtime=True), GenerationConfig(threshold=0.3))
    assert (given.fps, given.kv_policy, given.realtime, given.generation.threshold) == (5.0, None, True, 0.3)


def test_the_setup_makes_engines_and_assistants_with_its_settings():
    model = tiny_model(max_positions=512)
    setup = resolve_stream(model, generation=GenerationConfig(threshold=0.5, max_new_tokens=7))
    engine, assistant = setup.engine(), setup.assistant()
    assert engine.kv_policy is setup.kv_policy and assistant.session.engine.kv_policy is setup.kv_policy
    assert assistant.session.threshold == 0.5 and assistant.session.max_new_tokens == 7


FRONT_ENDS = ["cli/commands/narrate.py", "cli/commands/demo.py", "cli/commands/eval_live.py",
              "experiments/speed.py", "serve/app.py", "benchmarks/stream.py"]
"""Where narrate, demo, eval-live, bench, serve and benchmark set up their streams."""


def attributes_and_names(path: Path) -> set[str]:
    return {node.attr if isinstance(node, ast.Attribute) else node.id
            for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, (ast.Attribute, ast.Name))}


@pytest.mark.parametrize("path", FRONT_ENDS)
def test_front_ends_resolve_their_stream_there(path):
    assert "resolve_stream" in attributes_and_names(SRC / path)


def test_only_the_engine_defaults_read_the_models_fps_or_build_a_stream_policy():
    """The rule "fps and KV budget default to the model's own" is written once."""
    allowed = {"engine/defaults.py", "engine/kv_policy.py"}
    for path in sorted(SRC.rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        if name in allowed:
            continue
        tree = ast.parse(path.read_text())
        fps_reads = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                     and node.attr == "frame_fps" and isinstance(node.ctx, ast.Load)]
        assert not fps_reads, f"{name}:{fps_reads[0]} reads the model's fps (use resolve_stream)"
        assert "stream_policy" not in attributes_and_names(path), f"{name} builds a stream's KV policy"
