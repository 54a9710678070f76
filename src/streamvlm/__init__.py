"""streamvlm: online video language models (VideoLLM-online) that watch a stream frame by frame
over one KV cache and decide after every frame whether to stay silent or to speak."""

__version__ = "0.1.0"

from .config import LoraSettings, StreamVLMConfig, TemplateConfig, VisionConfig
from .conversation import ConversationRenderer, RenderedConversation, Turn
from .errors import UserError

__all__ = [
    "ConversationRenderer",
    "LoraSettings",
    "RenderedConversation",
    "StreamVLMConfig",
    "TemplateConfig",
    "Turn",
    "UserError",
    "VisionConfig",
    "__version__",
]
