"""What the ablation tables train: the runs, the model sizes and the sizes of the experiment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from ..engine.options import DEFAULT_THRESHOLD
from ..settings import PositiveInt, Probability, settings

MICRO_MODEL = (
    "model.config.llm_config.hidden_size=64", "model.config.llm_config.intermediate_size=128",
    "model.config.llm_config.num_hidden_layers=1", "model.config.llm_config.num_attention_heads=2",
    "model.config.llm_config.num_key_value_heads=1", "tokenizer.vocab_size=512",
)
"""The ``--quick`` model: a 1-layer LM of width 64."""

SMALL_MODEL = (
    "model.config.llm_config.hidden_size=128", "model.config.llm_config.intermediate_size=384",
    "model.config.llm_config.num_hidden_layers=2", "model.config.llm_config.num_attention_heads=4",
    "model.config.llm_config.num_key_value_heads=2",
)
"""The full run's model: tiny-synth with a 2-layer LM of width 128 (tiny-synth's tower, pretrained
once and frozen)."""

THETAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.725, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class RunSpec:
    """One training run of the ablations."""

    name: str
    recipe: str
    """The shipped recipe it starts from (``tiny-synth`` or a variant)."""
    overrides: tuple[str, ...] = ()
    method: str = "streaming"
    loss: str = "ce"
    tau: float = 1.0


RUNS = (
    RunSpec("streaming", "tiny-synth"),
    RunSpec("interleaved", "tiny-synth-interleaved", method="interleaved"),
    RunSpec("per_frame", "tiny-synth-per-frame", method="per_frame"),
    RunSpec("ohem", "tiny-synth-ohem", loss="ohem"),
    RunSpec("focal", "tiny-synth-focal", loss="focal"),
    RunSpec("tau0.5", "tiny-synth", ("loss.tau=0.5",), tau=0.5),
    RunSpec("tau2", "tiny-synth", ("loss.tau=2",), tau=2.0),
    RunSpec("tau3", "tiny-synth", ("loss.tau=3",), tau=3.0),
)
"""Every distinct run; ``streaming`` (CE, tau = 1) is the reference row of all three tables."""


@settings
class TablesOptions:
    """Sizes of the experiment. The defaults are the full run (about 45 minutes on 2 CPU cores)."""

    videos: Annotated[int, Field(ge=2, le=100_000)] = 160
    """Training videos (each gives one narration and one live-chat conversation)."""
    heldout_videos: Annotated[int, Field(ge=1, le=100_000)] = 12
    """Held-out videos (a new world seed, ``--split test``); their narrations are evaluated."""
    steps: PositiveInt = 300
    """Optimizer steps of every run (4 conversations each: batch 2 x accumulation 2)."""
    tower_epochs: PositiveInt = 5
    """Passes of the shared tower's pretraining over the training world's frames."""
    duration: Annotated[float, Field(ge=4, le=3600)] = 60.0
    """Seconds per synthetic video."""
    size: Annotated[int, Field(ge=32, le=1024, multiple_of=2)] = 64
    """Frame side of the synthetic videos."""
    seed: Annotated[int, Field(ge=0, lt=2**31)] = 1
    """World seed of the training videos; the held-out world uses ``seed + 1``."""
    threshold: Probability = DEFAULT_THRESHOLD
    """theta of the tables (the upstream demo's)."""
    thetas: tuple[Probability, ...] = THETAS
    """theta values of the sweep."""
    model: tuple[str, ...] = SMALL_MODEL
    """Training-config overrides that size the model (the same for every run)."""
    threads: Annotated[int, Field(ge=1, le=1024)] = 1
    """torch CPU threads. One is the fastest for these small models on a shared 2-core machine
    (measured: a micro-batch of the full run takes 0.44 s with one thread, 4.4 s with two while
    another process trains). Not part of the settings a work folder is checked against."""
    quick: bool = False

    @classmethod
    def make_quick(cls) -> TablesOptions:
        """Seconds-scale settings for checking the pipeline (not meaningful numbers)."""
        return cls(videos=4, heldout_videos=2, steps=3, duration=20.0, thetas=(0.3, 0.725, 0.95),
                   model=MICRO_MODEL, tower_epochs=1, quick=True)


