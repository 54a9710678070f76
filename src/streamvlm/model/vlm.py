"""StreamVLM: frame encoder -> connector -> causal LM, composed (no per-family subclass).

Frames become tokens (``[N, T, D_vision]``), the connector maps them to the LM width, and they
are written over the placeholder positions of the embedded token sequence. Placeholder ids may
lie past the embedding table (the released checkpoint adds ``<v>`` without resizing), so ids are
clamped before the lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft import PeftModel
from torch import Tensor, nn
from transformers import Cache, PreTrainedModel, PreTrainedTokenizerBase

from ..errors import ConfigError
from .attention import use_stream_attention
from .config import StreamVLMConfig
from .connector import Connector
from .conversation import ConversationRenderer
from .frame_encoder import FrameEncoder
from .frame_record import FrameRecord
from .language_model import apply_lora, base_model, build_language_model, load_tokenizer
from .loss import LossOptions, LossParts, streaming_loss
from .materialise import InitMode, target_device
from .tokenization import StreamTokenIds, add_frame_token


@dataclass
class StreamVLMOutput:
    """``logits [B, L, V]``; ``loss`` and its parts when labels were given; the KV cache when used."""

    logits: Tensor
    loss: Tensor | None = None
    lm_loss: Tensor | None = None
    stream_loss: Tensor | None = None
    cache: Cache | None = None


class StreamVLM(nn.Module):
    """The online video LLM. Build it with :meth:`from_config` or :meth:`from_pretrained`."""

    def __init__(
        self,
        config: StreamVLMConfig,
        language_model: PreTrainedModel | PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        frame_encoder: FrameEncoder | None,
        connector: Connector | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.language_model = language_model
        self.frame_encoder = frame_encoder
        self.tokenizer = tokenizer
        use_stream_attention(base_model(language_model))  # SDPA over shared K/V heads: no copies
        lm_config = base_model(language_model).config
        llm_hidden = lm_config.get_text_config().hidden_size
        if frame_encoder is not None:
            config.vision_hidden_size = frame_encoder.hidden_size
        if config.vision_hidden_size is None:
            raise ConfigError("vision_hidden_size: unknown without a frame encoder; set it in the config")
        config.llm_hidden_size = llm_hidden
        self.connector = connector if connector is not None else Connector(config.vision_hidden_size, llm_hidden)
        self.token_ids: StreamTokenIds = add_frame_token(tokenizer, config)
        self.renderer = ConversationRenderer(tokenizer, config, self.token_ids)
        self.vocab_size: int = self.get_input_embeddings().num_embeddings

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls,
        config: StreamVLMConfig,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        with_vision: bool = True,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        init: InitMode = "full",
    ) -> StreamVLM:
        """Build the parts named by ``config`` (pretrained where paths are given, random otherwise),
        each created in ``dtype`` on ``device`` (default: float32, where new tensors go): the LM,
        the frame tower and the connector, with no copy in another dtype or on another device.
        ``init``: how random parts are initialised (:mod:`streamvlm.model.materialise`; ``cheap`` where
        the values do not matter)."""
        device = target_device(device)
        lm = build_language_model(config, dtype=dtype, device=device, init=init)
        if tokenizer is None:
            if config.llm_name_or_path is None:
                raise ConfigError("a tokenizer is required when the LM is built from llm_config")
            tokenizer = load_tokenizer(config.llm_name_or_path)
        if config.lora is not None:
            lm = apply_lora(lm, config.lora)
        encoder = FrameEncoder.from_config(config.vision, dtype, device, init=init) if with_vision else None
        if encoder is not None:
            encoder.requires_grad_(False)  # the paper never trains the tower; recipes may unfreeze it
        vision_hidden = encoder.hidden_size if encoder is not None else config.vision_hidden_size
        connector = None
        if vision_hidden is not None:
            llm_hidden = base_model(lm).config.get_text_config().hidden_size
            connector = Connector(vision_hidden, llm_hidden, dtype=dtype, device=device)
        return cls(config, lm, tokenizer, encoder, connector)

    # ------------------------------------------------------------------ parts
    def get_input_embeddings(self) -> nn.Embedding:
        return self.language_model.get_input_embeddings()

    @property
    def device(self) -> torch.device:
        return self.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.get_input_embeddings().weight.dtype

    def embed_tokens(self, input_ids: Tensor) -> Tensor:
        """``[B, L]`` ids -> ``[B, L, D]``; ids past the table (placeholders) are clamped."""
        return self.get_input_embeddings()(input_ids.clamp(max=self.vocab_size - 1))

    def project_frames(self, frame_tokens: Tensor) -> Tensor:
        """Frame tokens ``[N, T, D_vision]`` -> LM-width frame embeddings ``[N, T, D]``."""
        if frame_tokens.shape[-1] != self.config.vision_hidden_size:
            raise ConfigError(
                f"frame features have width {frame_tokens.shape[-1]}, but the model's connector expects "
                f"{self.config.vision_hidden_size} (features from another vision tower?)"
            )
        weight = self.connector[0].weight
        return self.connector(frame_tokens.to(device=weight.device, dtype=weight.dtype))

    def embed_frames(self, pixel_values: Tensor) -> Tensor:
        """Normalised pixels ``[N, 3, S, S]`` -> frame embeddings ``[N, T, D]``."""
        if self.frame_encoder is None:
            raise ConfigError("this model was built without a frame encoder; pass frame features instead")
        return self.project_frames(self.frame_encoder(pixel_values))

    def build_inputs_embeds(self, input_ids: Tensor, frame_embeds: Tensor | None) -> Tensor:
        """Embed ``input_ids [B, L]`` and write ``frame_embeds [N, T, D]`` over the placeholders,
        in reading order (batch row by row). ``N * T`` must equal the number of placeholders."""
        embeds = self.embed_tokens(input_ids)
        is_frame = input_ids == self.token_ids.frame_id
        count = int(is_frame.sum())
        given = 0 if frame_embeds is None else frame_embeds.shape[0] * frame_embeds.shape[1]
        if count != given:
            raise ValueError(f"the inputs hold {count} frame placeholder tokens but {given} frame tokens were given")
        if count:
            embeds = embeds.masked_scatter(is_frame[..., None],
                                           frame_embeds.to(embeds.dtype).reshape(-1, embeds.shape[-1]))
        return embeds

    def frame_record(self) -> FrameRecord:
        """How this model takes frames: its frame encoder's record, or, loaded without its tower,
        the resize rule and image size its config names (the rest unknown, so not compared)."""
        if self.frame_encoder is not None:
            return self.frame_encoder.frame_record()
        vision = self.config.vision
        size = vision.image_size or (vision.tower_config or {}).get("image_size")
        return FrameRecord(vision.resize, size if isinstance(size, int) and not isinstance(size, bool) else None)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        frame_tokens: Tensor | None = None,
        pixel_values: Tensor | None = None,
        labels: Tensor | None = None,
        cache: Cache | None = None,
        position_ids: Tensor | None = None,
        use_cache: bool = False,
        loss_options: LossOptions | None = None,
        stream_loss_weight: float | None = None,
    ) -> StreamVLMOutput:
        """``input_ids [B, L]`` with placeholders; frames as ``frame_tokens [N, T, D_vision]``
        (pre-extracted) or ``pixel_values [N, 3, S, S]``; ``labels [B, L]`` aligned with positions.
        With labels, the loss is :meth:`loss` (``loss_options``: the training config's loss section)."""
        if frame_tokens is not None and pixel_values is not None:
            raise ValueError("pass frame_tokens or pixel_values, not both")
        frame_embeds = None
        if pixel_values is not None:
            frame_embeds = self.embed_frames(pixel_values)
        elif frame_tokens is not None:
            frame_embeds = self.project_frames(frame_tokens)
        inputs_embeds = self.build_inputs_embeds(input_ids, frame_embeds)
        out = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
        )
        result = StreamVLMOutput(logits=out.logits, cache=out.cache if use_cache else None)
        if labels is not None:
            parts = self.loss(out.logits, input_ids, labels, loss_options, tau=stream_loss_weight)
            result.loss, result.lm_loss, result.stream_loss = parts.loss, parts.lm_loss, parts.stream_loss
        return result

    def loss(self, logits: Tensor, input_ids: Tensor, labels: Tensor, options: LossOptions | None = None, *,
             tau: float | None = None) -> LossParts:
        """The training and evaluation loss (the one entry point): ``logits [B, L, V]``,
        ``input_ids [B, L]``, ``labels [B, L]`` (-100 = ignored) -> :class:`LossParts`.

        Learned positions whose input is a frame placeholder are frame decisions, weighted by
        ``tau`` (default: ``options.tau``, else ``config.stream_loss_weight``). ``options`` (kind,
        focal_gamma, ohem_keep; e.g. ``TrainConfig.loss``) defaults to plain cross-entropy.
        """
        if tau is None:
            tau = self.config.stream_loss_weight if options is None else options.tau
        extra = {} if options is None else dict(kind=options.kind, focal_gamma=options.focal_gamma,
                                                 ohem_keep=options.ohem_keep)
        stream_mask = input_ids == self.token_ids.frame_id
        return streaming_loss(logits, labels, stream_mask, tau=tau, **extra)
