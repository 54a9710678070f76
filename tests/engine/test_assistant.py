"""The text wrapper: images in, text events out."""

from __future__ import annotations

import numpy as np
import torch

from streamvlm.engine import GenerationConfig
from streamvlm.engine.assistant import LiveAssistant, encode_images
from tests.engine.mocks import bias_tokens
from tests.helpers import tiny_model


def test_images_pixels_and_embeddings_give_the_same_answers():
    model = tiny_model("llama")
    bias_tokens(model, interval_id=-50.0, eos_id=-5.0)  # always speaks
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (24, 40, 3), dtype=np.uint8) for _ in range(2)]
    embeds = encode_images(model, images)
    assert embeds.shape == (2, model.config.tokens_per_frame, model.config.llm_hidden_size)
    gen = GenerationConfig(max_new_tokens=3)
    by_image, by_pixels, by_embeds = (LiveAssistant(model, gen) for _ in range(3))
    by_image.ask("what", 0.0)
    by_pixels.ask("what", 0.0)
    by_embeds.ask("what", 0.0)
    pixels = model.frame_encoder.preprocess(torch.as_tensor(np.stack(images)))
    for i in range(2):
        a = by_image.push_frame(images[i], float(i))
        assert a == by_pixels.push_frame(pixels[i], float(i)) == by_embeds.push_frame(embeds[i], float(i))
    first = by_image.push_frame(images[0], 5.0)
    assert [e.role for e in a] == ["assistant"] and first[0].role == "assistant"
    by_image.reset()
    by_image.ask("what", 0.0)
    events = by_image.push_frame(images[0], 0.0)
    assert [e.role for e in events] == ["user", "assistant"] and events[0].text == "what"
