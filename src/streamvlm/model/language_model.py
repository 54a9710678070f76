"""The language model: any ``AutoModelForCausalLM``, its tokenizer, and LoRA through ``peft``.

Configs and folders are untrusted: sizes are checked and the model is counted on the meta device
before anything is allocated (see :mod:`streamvlm.model.checkpoint`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import (
    CONFIG_MAPPING,
    MODEL_FOR_CAUSAL_LM_MAPPING,
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ..errors import CheckpointError, ConfigError
from .config import LoraSettings, StreamVLMConfig
from .hf_checks import (
    LM_SIZE_FIELDS,
    MAX_TOKENIZER_BYTES,
    check_hf_config_values,
    check_model_fits,
    format_bytes,
    hf_config_values,
    one_line,
    pretrained_hf_config,
    read_json_object,
    short_repr,
    split_model_type,
)
from .materialise import InitMode, build_random, target_device


def llm_hf_config(llm_config: Any, prefix: str = "llm_config") -> Any:
    """The HF config of a causal LM from its dict (``model_type`` + fields), every size checked."""
    values, model_type = split_model_type(llm_config, prefix, "'llama', 'qwen2'")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise ConfigError(f"{prefix}.model_type: unknown model type {short_repr(model_type)} (e.g. 'llama', 'qwen2')")
    config_class = CONFIG_MAPPING[model_type]
    if config_class not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise ConfigError(f"{prefix}.model_type: {model_type!r} is not a causal language model")
    try:
        defaults = config_class().to_dict()
    except Exception:  # noqa: BLE001 - only used to fill in hidden_size / num_attention_heads
        defaults = {}
    defaults = {k: defaults.get(k) for k in ("hidden_size", "num_attention_heads", "vocab_size")}
    check_hf_config_values(values, LM_SIZE_FIELDS, f"{prefix}.", defaults=defaults)
    try:
        return AutoConfig.for_model(model_type, **values)
    except Exception as exc:  # noqa: BLE001 - HF raises many kinds for bad values
        raise ConfigError(f"{prefix}: not a valid {model_type} config ({one_line(exc)})") from None


def _causal_lm_builder(dtype: torch.dtype):
    """``hf_config -> AutoModelForCausalLM`` with its weights created in ``dtype`` (on the device
    new tensors go to)."""
    return lambda hf_config: AutoModelForCausalLM.from_config(hf_config, dtype=dtype)


def _load_pretrained_lm(name_or_path: str, dtype: torch.dtype | None, device: torch.device) -> PreTrainedModel:
    hf_config, where = pretrained_hf_config(name_or_path, AutoConfig.from_pretrained, "language model")
    if type(hf_config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise CheckpointError(f"{where}model_type: {hf_config.model_type!r} is not a causal language model")
    text = hf_config.get_text_config()
    check_hf_config_values(hf_config_values(text), LM_SIZE_FIELDS, where, error=CheckpointError)
    build_dtype = dtype if dtype is not None else (getattr(hf_config, "dtype", None) or torch.get_default_dtype())
    check_model_fits(_causal_lm_builder(build_dtype), hf_config, where.rstrip(": ") or str(name_or_path),
                     dtype=build_dtype, device=device, error=CheckpointError)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    try:  # loaded straight onto the device, in the dtype
        return AutoModelForCausalLM.from_pretrained(name_or_path, config=hf_config, device_map={"": device}, **kwargs)
    except Exception as exc:  # noqa: BLE001 - missing, truncated or mismatched weight files
        raise CheckpointError(f"{name_or_path}: cannot load the language model weights ({one_line(exc)})") from None


def build_language_model(config: StreamVLMConfig, dtype: torch.dtype | None = None,
                         device: torch.device | str | None = None, *, init: InitMode = "full") -> PreTrainedModel:
    """Load the causal LM named by ``config.llm_name_or_path`` or build a random one from ``llm_config``,
    in ``dtype`` (default: float32 for a random LM, the checkpoint's own for a pretrained one) on
    ``device`` (default: where new tensors go), without a copy in another dtype or on another device.
    ``init``: how a random LM is initialised (:mod:`streamvlm.model.materialise`).

    Raises ConfigError for a bad ``llm_config`` (field named), CheckpointError for a bad folder;
    either before anything is allocated, including when the weights would not fit in the memory of
    ``device``.
    """
    device = target_device(device)
    if config.llm_name_or_path is not None:
        return _load_pretrained_lm(config.llm_name_or_path, dtype, device)
    hf_config = llm_hf_config(config.llm_config or {})
    dtype = dtype or torch.get_default_dtype()
    return build_random(_causal_lm_builder(dtype), hf_config, "llm_config", dtype=dtype, device=device, init=init)


_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _is_token(value: Any) -> bool:
    """A special token as tokenizer_config.json stores it: a string or a serialised AddedToken."""
    return isinstance(value, str) or (isinstance(value, dict) and isinstance(value.get("content"), str))


def _check_tokenizer_config(file: Path) -> None:
    cfg = read_json_object(file)
    for name in _SPECIAL_TOKENS:
        if cfg.get(name) is not None and not _is_token(cfg[name]):
            raise CheckpointError(f"{file}: field '{name}' must be a token string, got {short_repr(cfg[name])}")
    cls = cfg.get("tokenizer_class")
    if cls is not None and not isinstance(cls, str):
        raise CheckpointError(f"{file}: field 'tokenizer_class' must be a string, got {short_repr(cls)}")
    for name in ("extra_special_tokens", "additional_special_tokens"):
        value = cfg.get(name)
        tokens = list(value.values()) if isinstance(value, dict) else value
        if value is not None and not (isinstance(tokens, list) and all(_is_token(t) for t in tokens)):
            raise CheckpointError(f"{file}: field '{name}' must be a list of token strings, got {short_repr(value)}")
    decoder = cfg.get("added_tokens_decoder")
    if decoder is not None and not (isinstance(decoder, dict) and all(_is_token(t) for t in decoder.values())):
        raise CheckpointError(f"{file}: field 'added_tokens_decoder' must map ids to tokens, got {short_repr(decoder)}")


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained``, with a broken local ``tokenizer.json`` or
    ``tokenizer_config.json`` raising a one-line CheckpointError that names the file."""
    folder = Path(name_or_path)
    local = folder.is_dir()
    tokenizer_json = folder / "tokenizer.json"
    if local and tokenizer_json.is_file():
        size = tokenizer_json.stat().st_size
        if size == 0:
            raise CheckpointError(f"{tokenizer_json}: empty file (expected a tokenizers JSON serialisation)")
        if size > MAX_TOKENIZER_BYTES:
            raise CheckpointError(f"{tokenizer_json}: {format_bytes(size)}, too large for a tokenizer "
                                  f"(at most {format_bytes(MAX_TOKENIZER_BYTES)})")
    if local and (folder / "tokenizer_config.json").is_file():
        _check_tokenizer_config(folder / "tokenizer_config.json")
    try:
        return AutoTokenizer.from_pretrained(str(name_or_path))
    except Exception as exc:  # noqa: BLE001 - transformers/tokenizers raise many kinds for a bad file
        if local and tokenizer_json.is_file():
            from tokenizers import Tokenizer

            try:
                Tokenizer.from_file(str(tokenizer_json))
            except Exception as tok_exc:  # noqa: BLE001
                raise CheckpointError(f"{tokenizer_json}: not a tokenizer the tokenizers library can read "
                                      f"({one_line(tok_exc)})") from None
        if local and (folder / "config.json").is_file():  # AutoTokenizer also reads the model config
            read_json_object(folder / "config.json")
        if local and not tokenizer_json.is_file():
            raise CheckpointError(f"{tokenizer_json}: no such file, and the tokenizer cannot be loaded without it "
                                  f"({type(exc).__name__}: {one_line(exc, 160)})") from None
        raise CheckpointError(f"{name_or_path}: cannot load the tokenizer "
                              f"({type(exc).__name__}: {one_line(exc)})") from None


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
        with warnings.catch_warnings():
            # peft reads the deprecated ``is_gradient_checkpointing`` of transformers 5 models
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return get_peft_model(model, lora_config(settings))
    except ValueError as exc:
        raise ConfigError(f"lora.target_modules: {exc}") from None


def base_model(model: PreTrainedModel | PeftModel) -> PreTrainedModel:
    """The underlying ``PreTrainedModel`` (unwraps peft)."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def text_config(language_model: torch.nn.Module) -> Any:
    """The text config of the first transformers model inside ``language_model`` (which may be
    wrapped: peft, or a module that adjusts its logits)."""
    for module in language_model.modules():
        config = getattr(module, "config", None)
        if hasattr(config, "get_text_config"):
            return config.get_text_config()
    raise ValueError("no transformers model inside this language model")
