"""The one model loader: every command that takes a model (narrate, demo, eval, encode, bench, serve)
names it with :class:`ModelSource` (``--model --llm --vision --device --dtype --threads``) and loads
it with :func:`load_model` or :func:`load_frame_encoder_of`, which first set torch's CPU threads
(:func:`streamvlm.threads.configure_threads`).

``--model`` may be:

* nothing: the embedded default model (:mod:`streamvlm.model.default`);
* a folder written by ``save_pretrained`` / ``streamvlm train`` (has ``checkpoint.json``);
* the released VideoLLM-online adapter (a PEFT folder with ``adapter_config.json``), which also
  needs the base LLM (``--llm``, e.g. meta-llama/Meta-Llama-3-8B-Instruct) and the vision tower
  (``--vision``, e.g. google/siglip-large-patch16-384), as folders or hub ids;
* a frame-encoder folder written by ``streamvlm pretrain-tower`` (``encode`` only);
* a Hugging Face Hub id (``owner/name``) of any of these, downloaded into the Hub cache with
  ``huggingface_hub`` (or read from it when offline).

This module imports torch only inside its functions, so option classes stay cheap to import.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from ..device import DType, resolve_device, resolve_dtype
from ..errors import UserError
from ..outputs import note_inputs
from ..settings import Device, settings

if TYPE_CHECKING:
    import torch

    from .frame_encoder import FrameEncoder
    from .vlm import StreamVLM

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


@settings
class ModelSource:
    """Which model to run, and where."""

    model: str | None = None
    """A checkpoint folder (save_pretrained, streamvlm train), the released VideoLLM-online adapter
    folder (with --llm and --vision), or a Hugging Face Hub id of one (default: the embedded model)."""
    llm: str | None = None
    """Base LLM folder or hub id, for a VideoLLM-online adapter (e.g. meta-llama/Meta-Llama-3-8B-Instruct)."""
    vision: str | None = None
    """Vision tower folder or hub id, for a VideoLLM-online adapter (e.g. google/siglip-large-patch16-384)."""
    device: Device = "auto"
    """cpu, cuda, cuda:N or mps; auto: cuda when available, else cpu."""
    dtype: DType = "auto"
    """Weights dtype; auto: bfloat16 on a GPU, float32 on a CPU."""
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None
    """Torch CPU threads (default: derived from the CPUs this process may use, its affinity and CPU
    quota, leaving room for the video decoder and the frame encoder; at most 4 on a GPU)."""

    def __post_init__(self) -> None:
        # What can be checked without torch is checked here, so a typo fails in a fraction of a second.
        for flag, name in (("--model", self.model), ("--llm", self.llm), ("--vision", self.vision)):
            if name is not None:
                check_location(name, flag)
                note_inputs(model_files(name))  # no output of the run may replace them
        if self.device.startswith("cuda") and not _gpu_driver_present():
            raise UserError(f"--device {self.device}: no CUDA device is available here")


def _gpu_driver_present() -> bool:
    """Whether a GPU driver is loaded (NVIDIA or ROCm device nodes); torch has the final word."""
    return any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg"))


_MODEL_FILE_NAMES = frozenset({"checkpoint.json", "config.json", "adapter_config.json", "frame_encoder.json",
                               "generation_config.json", "preprocessor_config.json", "special_tokens_map.json",
                               "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja"})
_MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".model")


def model_files(name: str) -> list[Path]:
    """The model files (weights, configs, tokenizer) in a local model folder ``name``; [] for a
    Hub id. Other files there (an evaluation report written beside the weights) are not listed."""
    folder = Path(name).expanduser()
    if not folder.is_dir():
        return []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.name in _MODEL_FILE_NAMES or p.name.startswith("tokenizer")
            or p.suffix in _MODEL_FILE_SUFFIXES]


def check_location(name: str, flag: str = "--model") -> None:
    """Refuse a model name that is neither an existing folder nor shaped like a Hub id."""
    path = Path(name).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise UserError(f"{flag} {name}: not a folder")
    if not _HUB_ID.fullmatch(name):
        raise UserError(f"{flag} {name}: no such folder (and not a Hugging Face Hub id like owner/name)")


# ---------------------------------------------------------------------------- locations
def locate(name: str, *, flag: str = "--model") -> Path:
    """A local folder for ``name``: the folder itself, or the Hub snapshot of a hub id."""
    check_location(name, flag)
    path = Path(name).expanduser()
    return path if path.is_dir() else _download(name, flag)


def _download(repo_id: str, flag: str) -> Path:
    """The Hub snapshot of ``repo_id`` (cached files only when offline)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except LocalEntryNotFoundError:
        raise UserError(f"{flag} {repo_id}: not a local folder, and the Hugging Face Hub cannot be reached "
                        "(offline?) with no cached copy; download it once with network access, or pass a folder"
                        ) from None
    except GatedRepoError:
        raise UserError(f"{flag} {repo_id}: gated on the Hugging Face Hub; accept its licence and log in "
                        "(`hf auth login`), then retry") from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise UserError(f"{flag} {repo_id}: no such model on the Hugging Face Hub (or it is private)") from None
    except OSError as exc:
        raise UserError(f"{flag} {repo_id}: download failed ({str(exc).splitlines()[0]})") from None


def kind_of(folder: Path) -> str:
    """``checkpoint``, ``adapter`` or ``frame_encoder`` for a model folder."""
    from .frame_encoder import is_frame_encoder_dir

    if (folder / "checkpoint.json").is_file():
        return "checkpoint"
    if (folder / "adapter_config.json").is_file():
        return "adapter"
    if is_frame_encoder_dir(folder):
        return "frame_encoder"
    raise UserError(f"--model {folder}: not a streamvlm checkpoint (no checkpoint.json), a VideoLLM-online "
                    "adapter (no adapter_config.json) or a frame-encoder folder (no frame_encoder.json)")


# ---------------------------------------------------------------------------- loading
def apply_threads(source: ModelSource, device: torch.device, *, decoding: bool = True):
    """Set torch's CPU threads for a run of ``source`` on ``device`` (``--threads``, else the
    default of :func:`streamvlm.threads.plan_threads`); returns the ThreadSettings in effect.
    ``decoding``: video is decoded and encoded beside the model."""
    from ..threads import configure_threads

    return configure_threads(source.threads, device=device, decoding=decoding)


def load_model(source: ModelSource, *, with_vision: bool = True, decoding: bool | None = None) -> StreamVLM:
    """The model named by ``source``, in eval mode, on its device and dtype. ``decoding``: video is
    decoded beside it (threads are left for that; default: ``with_vision``)."""
    from .checkpoint import load_pretrained, load_videollm_online
    from .default import load_default_model

    device = resolve_device(source.device)
    dtype = resolve_dtype(source.dtype, device)
    apply_threads(source, device, decoding=with_vision if decoding is None else decoding)
    if source.model is None:
        model = load_default_model(dtype=dtype, device=device)
    else:
        folder = locate(source.model)
        kind = kind_of(folder)
        if kind == "frame_encoder":
            raise UserError(f"--model {source.model}: a frame-encoder folder (pretrain-tower) holds no language "
                            "model; it can only be used with `streamvlm encode`")
        if kind == "adapter":
            if not source.llm or not source.vision:
                raise UserError(f"--model {source.model}: a VideoLLM-online adapter needs its base model: pass --llm "
                                "(e.g. meta-llama/Meta-Llama-3-8B-Instruct) and --vision "
                                "(e.g. google/siglip-large-patch16-384)")
            llm = str(locate(source.llm, flag="--llm"))
            vision = str(locate(source.vision, flag="--vision"))
            model = load_videollm_online(folder, llm, vision, dtype=dtype, device=device)
        else:
            model = load_pretrained(folder, with_vision=with_vision, dtype=dtype, device=device)
    # built in its dtype on its device; this casts only what was created apart (LoRA, pixel statistics)
    return model.to(device=device, dtype=dtype).eval()


def load_frame_encoder_of(source: ModelSource) -> FrameEncoder:
    """The frame encoder of ``source``: a frame-encoder folder, or a model's own tower."""
    from .frame_encoder import load_frame_encoder

    if source.model is not None:
        folder = locate(source.model)
        if kind_of(folder) == "frame_encoder":
            device = resolve_device(source.device)
            apply_threads(source, device)
            dtype = resolve_dtype(source.dtype, device)
            return load_frame_encoder(folder, dtype, device).to(device=device, dtype=dtype).eval()
    encoder = load_model(source).frame_encoder
    if encoder is None:
        raise UserError(f"--model {source.model}: this checkpoint has no frame encoder (vision tower)")
    return encoder
