"""Random models built where they run, in the dtype they run in.

:func:`build_random` counts the weights of ``build(hf_config)`` on the meta device in the target
dtype and refuses them when they would not fit in the memory available on the target device;
then builds the model on the meta device (nothing allocated), materialises it on the target
device (one allocation, in the target dtype: never a float32 copy that is cast afterwards) and
initialises it. Shared by :mod:`streamvlm.model.language_model` and :mod:`streamvlm.model.frame_encoder`.

Initialisation (``init``):

* ``full``: the model's own (transformers' ``initialize_weights``: each model's ``_init_weights``,
  which also recomputes the buffers that are not saved, such as rotary frequencies and position
  ids). Deterministic under ``torch.manual_seed``.
* ``cheap``: for models whose values do not matter (speed and memory runs): every matrix (a weight
  of two or more dimensions) is filled with one block of seeded noise repeated (a copy, not one
  random draw per weight: a 1.5-billion-weight model takes seconds instead of a minute on a CPU);
  norms, biases and buffers get the model's own initialisation. Also deterministic under the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from ..errors import ConfigError, UserError
from .hf_checks import check_model_fits

InitMode = Literal["full", "cheap"]

CHEAP_BLOCK = 1_000_003
"""Length of the noise block of ``cheap`` initialisation: a prime, so the rows of a matrix are
shifted windows of it, not copies of each other."""
CHEAP_STD = 0.02
"""Standard deviation of that noise (transformers' usual ``initializer_range``)."""


def target_device(device: torch.device | str | None) -> torch.device:
    """``device``, or the device new tensors go to now (``with torch.device(...)``; the CPU by default)."""
    return torch.device(device) if device is not None else torch.get_default_device()


def build_random(build: Callable[[Any], nn.Module], hf_config: Any, what: str, *, dtype: torch.dtype,
                 device: torch.device | str | None = None, init: InitMode = "full",
                 error: type[UserError] = ConfigError) -> nn.Module:
    """``build(hf_config)`` (which must create its weights in ``dtype``) on ``device``, initialised.

    Raises ``error`` naming ``what`` before anything is allocated when it cannot be built or would
    not fit in the memory available on ``device`` (counted in ``dtype``).
    """
    device = target_device(device)
    check_model_fits(build, hf_config, what, dtype=dtype, device=device, error=error)
    with torch.device("meta"):
        model = build(hf_config)
    if device.type == "meta":
        return model
    model.to_empty(device=device)
    initialise(model, init)
    return model


@torch.no_grad()
def initialise(model: nn.Module, init: InitMode = "full") -> None:
    """Initialise a materialised (``to_empty``) transformers model in place; see the module doc."""
    if init == "cheap":
        blocks: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        for param in model.parameters():
            if param.dim() < 2 or not param.is_floating_point():
                continue
            key = (param.device, param.dtype)
            if key not in blocks:  # drawn on the CPU from the global generator: the same on any device
                blocks[key] = (torch.randn(CHEAP_BLOCK, device="cpu") * CHEAP_STD).to(device=param.device,
                                                                                     dtype=param.dtype)
            fill_repeating(param, blocks[key])
            param._is_hf_initialized = True  # transformers' own init leaves flagged tensors alone
    elif init != "full":
        raise ValueError(f"init must be 'full' or 'cheap', got {init!r}")
    model.initialize_weights()
    model.tie_weights()  # materialising gives tied weights separate storage again


def fill_repeating(tensor: torch.Tensor, block: torch.Tensor) -> None:
    """Fill the contiguous ``tensor`` with ``block`` ``[B]`` repeated (row-major order)."""
    flat = tensor.view(-1)
    n, size = flat.numel(), block.numel()
    whole = n // size
    if whole:
        flat[: whole * size].view(whole, size).copy_(block.expand(whole, size))
    rest = n - whole * size
    if rest:
        flat[whole * size:].copy_(block[:rest])
