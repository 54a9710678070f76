"""streamvlm: online video language models (VideoLLM-online) that watch a stream frame by frame
over one KV cache and decide after every frame whether to stay silent or to speak.

Importing the package is cheap: the names below load their modules (and torch) on first use.
"""

from __future__ import annotations

from .lazy import lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {
    "ConversationRenderer": "conversation", "RenderedConversation": "conversation", "Turn": "conversation",
    "LoraSettings": "config", "StreamVLMConfig": "config", "TemplateConfig": "config", "VisionConfig": "config",
    "UserError": "errors",
}

__all__ = [*sorted(_EXPORTS), "__version__"]
__getattr__ = lazy_getattr(__name__, _EXPORTS)
