"""LLM-driven dialogue generation: chat backends (local transformers model, OpenAI-compatible
endpoint, resumable cache), prompt templates, narration refinement and the LLM live-chat responder."""

from .backend import BackendError, ChatBackend, Message, Prompt
from .cache import CachedBackend
from .narration import clean_refinement, narrations_by_uid, refine_narrations, rule_refine
from .prompts import PromptTemplate, load_prompt
from .responder import LLMResponder

__all__ = [
    "BackendError", "ChatBackend", "Message", "Prompt", "CachedBackend", "clean_refinement",
    "narrations_by_uid", "refine_narrations", "rule_refine", "PromptTemplate", "load_prompt", "LLMResponder",
]
