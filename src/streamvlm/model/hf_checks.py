"""Checks on untrusted model files before anything large is built: JSON objects, the nested
Hugging Face configs of the language model and the vision tower (types, sizes, divisibility), and
a model's weight count on the meta device against the memory available. Shared by
:mod:`streamvlm.model.checkpoint`, :mod:`streamvlm.model.language_model` and :mod:`streamvlm.model.frame_encoder`;
every failure is a one-line :class:`~streamvlm.errors.CheckpointError` naming the file and field.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError, UserError
from ..jsonfiles import loads

MAX_JSON_BYTES = 64 * 2**20
"""Largest config-like JSON file read (checkpoint.json, adapter_config.json, tokenizer_config.json)."""
MAX_TOKENIZER_BYTES = 2**28
"""Largest ``tokenizer.json`` read (real ones are at most tens of MB)."""


# ---------------------------------------------------------------------------- untrusted-file helpers
ANSI_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")


def one_line(exc: BaseException | str, limit: int = 300) -> str:
    """``exc``'s message on one line (whitespace and terminal colours collapsed), at most ``limit`` chars."""
    text = " ".join(ANSI_ESCAPES.sub("", str(exc)).split())
    if not text and isinstance(exc, BaseException):
        text = type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_type(value: Any) -> str:
    """The JSON name of ``value``'s type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # pragma: no cover


def available_memory(device: torch.device | None = None) -> tuple[int, str] | None:
    """(bytes free now, where) on ``device`` (default: the device new tensors go to, ``with
    torch.device(...)``; the CPU by default), or None on the meta device; tests may monkeypatch this."""
    device = torch.device(device) if device is not None else torch.get_default_device()
    if device.type == "meta":
        return None
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0]), str(device)
    import psutil

    return int(psutil.virtual_memory().available), "cpu"


def read_json_object(file: str | Path, *, max_bytes: int = MAX_JSON_BYTES,
                     error: type[UserError] = CheckpointError) -> dict[str, Any]:
    """Read ``file`` as a JSON object (safely, see :mod:`streamvlm.jsonfiles`); any problem raises
    ``error`` naming the file."""
    file = Path(file)
    try:
        size = file.stat().st_size
        if size > max_bytes:
            raise error(f"{file}: {format_bytes(size)}, too large for this file (at most {format_bytes(max_bytes)})")
        raw = file.read_bytes()
    except FileNotFoundError:
        raise error(f"{file}: no such file") from None
    except OSError as exc:
        raise error(f"{file}: cannot read ({exc.strerror or one_line(exc)})") from None
    if not raw.strip():
        raise error(f"{file}: empty file (expected a JSON object)")
    value = loads(raw, file=str(file), error=error)
    if not isinstance(value, dict):
        raise error(f"{file}: expected a JSON object, got {json_type(value)}")
    return value


# ---------------------------------------------------------------------------- nested HF configs
LM_SIZE_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "head_dim", "max_position_embeddings")
TOWER_SIZE_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "num_channels", "image_size", "patch_size", "num_patches", "projection_dim")
_OPTIONAL_SIZES = {"num_key_value_heads", "head_dim", "projection_dim"}
_FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_hf_config_values(values: Mapping[str, Any], fields: Iterable[str], prefix: str, *,
                           defaults: Mapping[str, Any] | None = None,
                           error: type[UserError] = ConfigError) -> None:
    """Check the size fields of a Hugging Face config dict before anything is built from it.

    ``prefix`` starts each message (``"llm_config."``, ``"<folder>/config.json: "``); ``defaults``
    supplies ``hidden_size`` / ``num_attention_heads`` / ``vocab_size`` when ``values`` leaves them out.
    """
    for name in fields:
        if name not in values:
            continue
        value = values[name]
        if value is None and name in _OPTIONAL_SIZES:
            continue
        if not is_int(value) or value <= 0:
            raise error(f"{prefix}{name}: must be a positive integer, got {short_repr(value)}")
    defaults = defaults or {}
    hidden = values.get("hidden_size", defaults.get("hidden_size"))
    heads = values.get("num_attention_heads", defaults.get("num_attention_heads"))
    kv_heads = values.get("num_key_value_heads")
    if is_int(heads) and is_int(kv_heads) and heads % kv_heads:
        raise error(f"{prefix}num_key_value_heads: {kv_heads} does not divide num_attention_heads {heads}")
    if is_int(hidden) and is_int(heads) and values.get("head_dim") is None and hidden % heads:
        raise error(f"{prefix}hidden_size: {hidden} is not divisible by num_attention_heads {heads}")
    vocab = values.get("vocab_size", defaults.get("vocab_size"))
    pad = values.get("pad_token_id")
    if pad is not None and is_int(vocab) and (not is_int(pad) or not -vocab <= pad < vocab):
        raise error(f"{prefix}pad_token_id: must be null or a token id below vocab_size {vocab}, got {short_repr(pad)}")
    act = values.get("hidden_act")
    if isinstance(act, str):
        from transformers.activations import ACT2FN

        if act not in ACT2FN:
            raise error(f"{prefix}hidden_act: unknown activation {short_repr(act)}")
    for name in ("dtype", "torch_dtype"):
        value = values.get(name)
        if value is not None and value not in _FLOAT_DTYPES:
            raise error(f"{prefix}{name}: must be null or one of {', '.join(_FLOAT_DTYPES)}, got {short_repr(value)}")


def model_size(build: Callable[[Any], torch.nn.Module], hf_config: Any) -> tuple[int, int]:
    """(bytes, elements) of the parameters and buffers ``build(hf_config)`` would allocate, each in
    the dtype ``build`` creates it in (a bfloat16 build counts 2 bytes a weight, float32 4).

    The model is built on the meta device, so nothing is allocated; when it has more than two
    layers, only 1- and 2-layer copies are built and the rest is extrapolated (so an absurd
    ``num_hidden_layers`` costs nothing either).
    """

    def count(cfg: Any) -> tuple[int, int]:
        with torch.device("meta"):
            model = build(cfg)
        tensors = list(itertools.chain(model.parameters(), model.buffers()))
        return sum(t.numel() * t.element_size() for t in tensors), sum(t.numel() for t in tensors)

    layers = getattr(hf_config, "num_hidden_layers", None)
    if not is_int(layers) or layers <= 2:
        return count(copy.deepcopy(hf_config))
    sizes = []
    for n in (1, 2):
        cfg = copy.deepcopy(hf_config)
        for key, value in list(vars(cfg).items()):  # per-layer lists (layer_types, ...)
            if isinstance(value, list) and len(value) == layers:
                setattr(cfg, key, value[:n])
        cfg.num_hidden_layers = n
        sizes.append(count(cfg))
    (b1, e1), (b2, e2) = sizes
    return b1 + (layers - 1) * (b2 - b1), e1 + (layers - 1) * (e2 - e1)


def check_model_fits(build: Callable[[Any], torch.nn.Module], hf_config: Any, what: str, *,
                     dtype: torch.dtype | None = None, device: torch.device | None = None,
                     error: type[UserError] = ConfigError) -> None:
    """Refuse ``hf_config`` when it cannot be built, or its weights would not fit in the memory
    available now on ``device`` (default: where new tensors go). Counts on the meta device, in the
    dtype ``build`` creates the weights in (``dtype`` names it in the message): nothing is allocated."""
    try:
        nbytes, count = model_size(build, hf_config)
    except Exception as exc:  # noqa: BLE001 - any failure to build from untrusted values is the config's fault
        raise error(f"{what}: cannot build a model from it ({type(exc).__name__}: {one_line(exc)})") from None
    available = available_memory(device)
    if available is not None and nbytes > available[0]:
        size = format_bytes(nbytes) + (f" in {str(dtype).removeprefix('torch.')}" if dtype is not None else "")
        raise error(f"{what}: the model would have {count:,} weights ({size}), more than the "
                    f"{format_bytes(available[0])} of memory available ({available[1]}); refusing to allocate it")


def pretrained_hf_config(name_or_path: str | Path, load: Callable[[str], Any], what: str) -> tuple[Any, str]:
    """``load(name_or_path)`` (an HF ``from_pretrained`` of a config) with errors as CheckpointError.

    Returns the config and the prefix for messages about its fields (``"<folder>/config.json: "``).
    A local ``config.json`` is first read as a JSON object, so garbage is named as such.
    """
    folder = Path(name_or_path)
    if folder.is_dir():
        file = folder / "config.json"
        read_json_object(file)
        where = f"{file}: "
    else:
        where = f"{name_or_path}: "
    try:
        return load(str(name_or_path)), where
    except Exception as exc:  # noqa: BLE001 - HF raises many kinds for a bad config
        raise CheckpointError(f"{where}not a valid {what} config ({one_line(exc)})") from None


def hf_config_values(hf_config: Any) -> dict[str, Any]:
    try:
        return hf_config.to_dict()
    except Exception:  # noqa: BLE001
        return dict(vars(hf_config))


# ---------------------------------------------------------------------------- save / load


def split_model_type(config: Any, prefix: str, example: str) -> tuple[dict[str, Any], Any]:
    """An HF config dict from a model config split into ``(other fields, model_type)``; a
    ConfigError naming ``prefix`` when it is not an object or has no ``model_type`` (its value is the
    caller's to check)."""
    if not isinstance(config, dict):
        raise ConfigError(f"{prefix}: expected an object (an HF config with 'model_type'), got {short_repr(config)}")
    values = dict(config)
    model_type = values.pop("model_type", None)
    if model_type is None:
        raise ConfigError(f"{prefix}: missing 'model_type' (e.g. {example})")
    return values, model_type
