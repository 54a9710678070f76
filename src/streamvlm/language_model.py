"""The language model: any ``AutoModelForCausalLM``, its tokenizer, and LoRA through ``peft``."""

from __future__ import annotations

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .config import LoraSettings, StreamVLMConfig
from .errors import ConfigError


def build_language_model(config: StreamVLMConfig, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """Load the causal LM named by ``config.llm_name_or_path`` or build a random one from ``llm_config``."""
    if config.llm_name_or_path is not None:
        kwargs = {"dtype": dtype} if dtype is not None else {}
        return AutoModelForCausalLM.from_pretrained(config.llm_name_or_path, **kwargs)
    llm_config = dict(config.llm_config or {})
    model_type = llm_config.pop("model_type", None)
    if model_type is None:
        raise ConfigError("llm_config: missing 'model_type' (e.g. 'llama', 'qwen2')")
    try:
        hf_config = AutoConfig.for_model(model_type, **llm_config)
    except ValueError as exc:
        raise ConfigError(f"llm_config: {exc}") from None
    model = AutoModelForCausalLM.from_config(hf_config)
    return model.to(dtype) if dtype is not None else model


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(name_or_path)


def lora_config(settings: LoraSettings) -> LoraConfig:
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def apply_lora(model: PreTrainedModel, settings: LoraSettings) -> PeftModel:
    """Wrap the LM with LoRA adapters on the modules whose names fully match ``target_modules``."""
    try:
        return get_peft_model(model, lora_config(settings))
    except ValueError as exc:
        raise ConfigError(f"lora.target_modules: {exc}") from None


def base_model(model: PreTrainedModel | PeftModel) -> PreTrainedModel:
    """The underlying ``PreTrainedModel`` (unwraps peft)."""
    return model.get_base_model() if isinstance(model, PeftModel) else model
