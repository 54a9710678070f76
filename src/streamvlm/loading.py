"""Resolve what the user names with ``--model`` into a loaded :class:`~streamvlm.model.StreamVLM`.

* nothing: the embedded default model (:mod:`streamvlm.default_model`);
* a folder written by ``save_pretrained`` (has ``checkpoint.json``);
* the released VideoLLM-online adapter (a PEFT folder with ``adapter_config.json``), which also
  needs the base LLM (``--llm``, e.g. meta-llama/Meta-Llama-3-8B-Instruct) and the vision tower
  (``--vision``, e.g. google/siglip-large-patch16-384), as paths or hub ids.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device is available here")
    return torch.device(device)


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return DTYPES[dtype]
    except KeyError:
        raise UserError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}") from None


def load_model(model: str | None = None, *, llm: str | None = None, vision: str | None = None,
               device: str | None = None, dtype: str | None = None):
    """Load the model named on the command line, in eval mode, on ``device`` with ``dtype``."""
    from .checkpoint import load_pretrained, load_videollm_online
    from .default_model import load_default_model

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if model is None:
        loaded = load_default_model()
    else:
        path = Path(model)
        if (path / "adapter_config.json").is_file():
            if not llm or not vision:
                raise UserError(
                    f"{model}: a VideoLLM-online adapter needs its base model: pass --llm "
                    "(e.g. meta-llama/Meta-Llama-3-8B-Instruct) and --vision (e.g. google/siglip-large-patch16-384)"
                )
            loaded = load_videollm_online(path, llm, vision, dtype=dt)
        elif path.is_dir():
            loaded = load_pretrained(path)
        else:
            raise UserError(f"--model {model}: no such checkpoint folder")
    return loaded.to(device=dev, dtype=dt).eval()
