"""Typed model configuration, saved as JSON next to the weights.

``StreamVLMConfig`` composes the three parts of the model (frame encoder, connector, language
model) with the text template, the frame tokens and the streaming loss weight. The defaults are
those of the released VideoLLM-online "live1+" model: SigLIP pooled token + 3x3 pooled patch grid
(10 tokens per frame), interval token ``,``, upstream text layout.
"""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Literal

from pydantic import Field

from ..settings import Fps, NonNegativeFloat, PositiveInt, settings

UPSTREAM_SYSTEM_PROMPT = (
    "A multimodal AI assistant is helping users with some activities. Below is their "
    "conversation, interleaved with the list of video frames received by the assistant."
)

UPSTREAM_LORA_TARGETS = r"model.*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)|lm_head$"


@settings
class VisionConfig:
    """The frame encoder: an image tower plus the frame-token recipe."""

    name_or_path: str | None = None
    """Hugging Face hub id or local folder of the image tower (SigLIP, SigLIP2, CLIP)."""
    tower_config: dict[str, Any] | None = None
    """An HF vision config as a dict (with ``model_type``) to build a randomly initialised tower."""
    use_pooled: bool = True
    """Emit the tower's pooled/CLS token as the first token of each frame."""
    pool_size: Annotated[int, Field(ge=0, le=64)] = 3
    """Emit a ``pool_size x pool_size`` adaptive average pool of the patch grid (0 disables)."""
    image_size: Annotated[int, Field(ge=1, le=8192)] | None = None
    """Square input side in pixels; ``None`` takes the tower's own ``image_size``."""
    image_mean: Annotated[list[float], Field(min_length=3, max_length=3)] | None = None
    """Per-channel pixel mean after scaling to [0, 1]; ``None`` takes the tower family's own
    (SigLIP: 0.5, CLIP: OpenAI CLIP mean)."""
    image_std: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=3, max_length=3)] | None = None
    """Per-channel pixel standard deviation (values > 0); ``None`` takes the tower family's own."""
    resize: Literal["streamvlm", "upstream"] = "streamvlm"
    """How a frame becomes a square image (one resize, by FFmpeg's scaler when the frame is decoded:
    :mod:`streamvlm.video.resize`). ``upstream``: as VideoLLM-online's ffmpeg preprocessing (the
    released model's): bicubic, in the video's own pixel format, long side to the image size, the
    short side to an even number of pixels with ffmpeg's rounding (halves up), black padding
    centred (offsets rounded down to even, as yuv420p video has them). ``streamvlm``: bilinear,
    padding at the bottom/right (the embedded default model and earlier checkpoints)."""

    @property
    def tokens_per_frame(self) -> int:
        return int(self.use_pooled) + self.pool_size * self.pool_size

    def __post_init__(self) -> None:
        if self.name_or_path is not None and self.tower_config is not None:
            raise ValueError("set only one of 'name_or_path' and 'tower_config'")
        if self.tokens_per_frame == 0:
            raise ValueError("use_pooled=false and pool_size=0 leave no token per frame")


@settings
class TemplateConfig:
    """Text pieces of the conversation layout. The text between two special tokens is tokenized
    whole, as upstream (``{system}\\n\\n[``, ``]\\nUser: {query}\\nAssistant:``).

    The default reproduces the upstream layout::

        <bos>{system}\\n\\n[<v>..<v>,<v>..<v>]\\nUser: ...\\nAssistant: ...<eos>\\n[<v>..]\\nAssistant: ...<eos>

    The space after ``User:``/``Assistant:`` is rendered as ``content_prefix`` in front of the
    content, so that the content's first word is tokenized as in the full string.
    """

    system_close: str = "\n"
    stream_open: str = "\n["
    stream_close: str = "]"
    user_open: str = "\nUser:"
    assistant_open: str = "\nAssistant:"
    content_prefix: str = " "
    system_prompt: str = UPSTREAM_SYSTEM_PROMPT
    """Default system prompt used at inference when a conversation brings none."""


@settings
class LoraSettings:
    """LoRA on the language model through ``peft``. The connector is always fully trained."""

    r: PositiveInt = 128
    """Rank of the LoRA matrices."""
    alpha: PositiveInt = 256
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    """Dropout on the LoRA input, in [0, 1)."""
    target_modules: str = UPSTREAM_LORA_TARGETS
    """A regex over module names of the causal LM (matched in full, as peft does)."""


@settings
class StreamVLMConfig:
    """The whole model: frame encoder -> connector -> causal LM, plus the streaming layout."""

    llm_name_or_path: str | None = None
    """Hugging Face hub id or local folder of the causal LM (and its tokenizer)."""
    llm_config: dict[str, Any] | None = None
    """An HF causal-LM config as a dict (with ``model_type``) to build a random LM."""
    vision: VisionConfig = field(default_factory=VisionConfig)
    template: TemplateConfig = field(default_factory=TemplateConfig)
    lora: LoraSettings | None = None
    frame_token: Annotated[str, Field(min_length=1)] = "<v>"
    """Placeholder token, added to the tokenizer without resizing the embedding table."""
    interval_token: str = ","
    """Token that means "stay silent, next frame". Empty: frames are not separated (live1) and
    silence is learned as the end-of-sequence token, as upstream does."""
    last_frame_label: Literal["silence", "next_token"] = "silence"
    """Label of the last frame of a stream not followed by a reply (before a user query, or at the
    end of a conversation): ``silence`` learns the silence token (the interval token; streamvlm's
    rule: the model is not asked to speak before a question it cannot see yet); ``next_token``
    learns the token that follows (``]\\n`` or ``]``), as upstream does."""
    reply_cap: Annotated[int, Field(ge=1, le=4096)] = 64
    """Most tokens of one reply at inference, eos excluded, unless the generation settings name
    another (``--max-new-tokens``): 64 for streamvlm's models, 99 for the released VideoLLM-online
    model, whose replies upstream stop at 100 tokens with the eos."""
    stream_kv_budget: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    """KV tokens a stream keeps unless told otherwise (``--kv-budget``): the session start as an
    attention sink plus the most recent window, so a stream never runs past what the model was
    trained on. Set it from the training streams (the embedded model: 1024, see
    docs/long-streams.md); None: the language model's context (max_position_embeddings)."""
    stream_loss_weight: NonNegativeFloat = 1.0
    """tau: weight of the learned frame decisions in the loss."""
    frame_fps: Fps = 2.0
    """Frames per second the model was trained on (inference default)."""
    vision_hidden_size: PositiveInt | None = None
    """Width of the frame tokens fed to the connector; filled from the tower when built."""
    llm_hidden_size: PositiveInt | None = None
    """Width of the LM embeddings; filled from the LM when built."""

    def __post_init__(self) -> None:
        if (self.llm_name_or_path is None) == (self.llm_config is None):
            raise ValueError("set exactly one of 'llm_name_or_path' and 'llm_config'")
        if self.vision.name_or_path is None and self.vision.tower_config is None:
            raise ValueError("vision: set one of 'name_or_path' and 'tower_config'")

    @property
    def tokens_per_frame(self) -> int:
        return self.vision.tokens_per_frame
