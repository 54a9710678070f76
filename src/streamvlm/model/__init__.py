"""The model, part by part, in the order a frame goes through it: the frame encoder
(:mod:`.frame_encoder`), the connector (:mod:`.connector`), the language model
(:mod:`.language_model`, :mod:`.attention`), composed in :mod:`.vlm`; its config (:mod:`.config`),
the conversation layout (:mod:`.conversation`, :mod:`.tokenization`), the training loss
(:mod:`.loss`) and the decision after a frame (:mod:`.decision`); checkpoints (:mod:`.checkpoint`,
:mod:`.hf_checks`, :mod:`.materialise`), the loader (:mod:`.loading`), the embedded default model
(:mod:`.default`) and presets built from configs alone (:mod:`.presets`). The names below load lazily.
"""

from __future__ import annotations

from ..lazy import lazy_getattr

_EXPORTS = {
    "StreamVLM": "vlm", "StreamVLMOutput": "vlm",
    "LoraSettings": "config", "StreamVLMConfig": "config", "TemplateConfig": "config", "VisionConfig": "config",
    "ModelSource": "loading", "load_model": "loading", "load_default_model": "default",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
