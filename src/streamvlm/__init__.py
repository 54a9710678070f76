"""streamvlm: online video language models (VideoLLM-online) that watch a stream frame by frame
over one KV cache and decide after every frame whether to stay silent or to speak.

Importing the package is cheap: the names below load their modules (and torch) on first use.
"""

from __future__ import annotations

from .lazy import lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {
    "ConversationRenderer": "model.conversation", "RenderedConversation": "model.conversation",
    "Turn": "model.conversation", "LoraSettings": "model.config", "StreamVLMConfig": "model.config",
    "TemplateConfig": "model.config", "VisionConfig": "model.config",
    "UserError": "errors",
}

__all__ = [*sorted(_EXPORTS), "__version__"]
__getattr__ = lazy_getattr(__name__, _EXPORTS)
