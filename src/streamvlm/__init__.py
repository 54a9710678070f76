"""streamvlm: online video language models (VideoLLM-online) that watch a stream frame by frame
over one KV cache and decide after every frame whether to stay silent or to speak.

Importing the package is cheap: the names below load their modules (and torch) on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ConversationRenderer": "conversation", "RenderedConversation": "conversation", "Turn": "conversation",
    "LoraSettings": "config", "StreamVLMConfig": "config", "TemplateConfig": "config", "VisionConfig": "config",
    "UserError": "errors",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'streamvlm' has no attribute {name!r}")
