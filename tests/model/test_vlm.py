"""The composed model: frame encoder recipe, placeholder handling, batched forward, streaming == offline."""

import pytest
import torch
from transformers import DynamicCache

from streamvlm.errors import ConfigError
from streamvlm.model.conversation import Turn
from streamvlm.model.presets import tiny_config, train_tokenizer
from streamvlm.model.vlm import StreamVLM

from ..helpers import tiny_model

CONVERSATION = [
    Turn("system", "You pick up the cup."),
    Turn("stream", num_frames=3, learn=True),
    Turn("assistant", "You pick up the red cup.", learn=True),
    Turn("stream", num_frames=2, learn=1),
    Turn("user", "What have I done?"),
    Turn("assistant", "You picked up the cup.", learn=True),
    Turn("stream", num_frames=2, learn=True),
]


@pytest.mark.parametrize("vision, expected_tokens", [("siglip", 10), ("clip", 10), ("siglip2", 10)])
def test_frame_encoder_recipe(vision, expected_tokens):
    model = tiny_model("llama", vision)
    enc = model.frame_encoder
    frames = torch.randint(0, 256, (3, 24, 48, 3), dtype=torch.uint8)
    pixels = enc.preprocess(frames)
    assert pixels.shape == (3, 3, 32, 32)
    tokens = enc(pixels)
    assert tokens.shape == (3, expected_tokens, enc.hidden_size)
    # pooled token first, then the 3x3 grid: the grid equals an average pool of the patch tokens
    hidden = enc.tower(pixel_values=pixels) if vision != "siglip2" else None
    if vision == "siglip":
        assert torch.allclose(tokens[:, 0], hidden.pooler_output, atol=1e-6)
    if vision == "clip":
        assert torch.allclose(tokens[:, 0], hidden.last_hidden_state[:, 0], atol=1e-6)


def test_preprocess_keeps_aspect_and_pads_black():
    enc = tiny_model().frame_encoder
    frames = torch.full((1, 20, 40, 3), 255, dtype=torch.uint8)  # wide white image
    pixels = enc.preprocess(frames)
    # long side 40 -> 32, short side 20 -> 16; rows 16.. are zero-padding (black -> (0 - 0.5) / 0.5 = -1)
    assert torch.allclose(pixels[0, :, :16, :], torch.ones(3, 16, 32))
    assert torch.allclose(pixels[0, :, 16:, :], -torch.ones(3, 16, 32))


def test_live1_single_token():
    model = tiny_model(pool_size=0)
    frames = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    assert model.frame_encoder.encode_frames(frames).shape[:2] == (2, 1)


def test_placeholder_added_without_resizing_embeddings():
    tok = train_tokenizer()
    base_vocab = len(tok)
    model = StreamVLM.from_config(tiny_config(vocab_size=base_vocab), tok)
    assert model.token_ids.frame_id == base_vocab == len(tok) - 1
    assert model.get_input_embeddings().num_embeddings == base_vocab
    rendered = model.renderer.render(CONVERSATION)
    frames = torch.randn(rendered.num_frames, 10, model.config.vision_hidden_size)
    out = model(torch.tensor([rendered.input_ids]), frame_tokens=frames, labels=torch.tensor([rendered.labels]))
    assert out.logits.shape[-1] == base_vocab and torch.isfinite(out.loss)


def test_pixels_and_features_give_the_same_logits():
    model = tiny_model()
    rendered = model.renderer.render(CONVERSATION)
    frames = torch.randint(0, 256, (rendered.num_frames, 32, 32, 3), dtype=torch.uint8)
    ids = torch.tensor([rendered.input_ids])
    with torch.no_grad():
        a = model(ids, pixel_values=model.frame_encoder.preprocess(frames)).logits
        b = model(ids, frame_tokens=model.frame_encoder.encode_frames(frames)).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_placeholder_count_mismatch_and_width_mismatch():
    model = tiny_model()
    rendered = model.renderer.render(CONVERSATION)
    ids = torch.tensor([rendered.input_ids])
    with pytest.raises(ValueError, match="frame placeholder tokens"):
        model(ids, frame_tokens=torch.randn(rendered.num_frames - 1, 10, 32))
    with pytest.raises(ConfigError, match="width 48"):
        model(ids, frame_tokens=torch.randn(rendered.num_frames, 10, 48))


def test_forward_loss_weights_frame_decisions():
    model = tiny_model()
    rendered = model.renderer.render(CONVERSATION)
    ids, labels = torch.tensor([rendered.input_ids]), torch.tensor([rendered.labels])
    frames = torch.randn(rendered.num_frames, 10, 32)
    with torch.no_grad():
        out1 = model(ids, frame_tokens=frames, labels=labels, stream_loss_weight=1.0)
        out2 = model(ids, frame_tokens=frames, labels=labels, stream_loss_weight=2.0)
    n_stream = sum(rendered.stream_mask())
    n = sum(label != -100 for label in rendered.labels)
    # total = (sum_lm + tau * sum_stream) / n, so the difference is stream_loss * n_stream / n
    assert (out2.loss - out1.loss).item() == pytest.approx(out1.stream_loss.item() * n_stream / n, rel=1e-4)


def test_batched_forward_with_padding_matches_single():
    model = tiny_model()
    from streamvlm.data.collate import Sample, collate

    short = model.renderer.render(CONVERSATION[:3])
    long = model.renderer.render(CONVERSATION)
    fs, fl = torch.randn(short.num_frames, 10, 32), torch.randn(long.num_frames, 10, 32)
    batch = collate([Sample(short, fs), Sample(long, fl)], pad_id=model.token_ids.pad_id)
    with torch.no_grad():
        out = model(batch.input_ids, batch.attention_mask, frame_tokens=batch.frames, labels=batch.labels)
        single_s = model(torch.tensor([short.input_ids]), frame_tokens=fs).logits[0]
        single_l = model(torch.tensor([long.input_ids]), frame_tokens=fl).logits[0]
    assert torch.allclose(out.logits[0, : len(short.input_ids)], single_s, atol=1e-5)
    assert torch.allclose(out.logits[1], single_l, atol=1e-5)
    assert (batch.labels[0, len(short.input_ids):] == -100).all()


@pytest.mark.parametrize("llm", ["llama", "qwen2"])
def test_streaming_equals_offline(llm):
    """Feeding the conversation piece by piece through a Cache gives the logits of one full forward."""
    model = tiny_model(llm)
    rendered = model.renderer.render(CONVERSATION)
    frames = torch.randn(rendered.num_frames, 10, 32)
    ids = torch.tensor([rendered.input_ids])
    with torch.no_grad():
        offline = model(ids, frame_tokens=frames).logits[0]
        # piece boundaries: after every frame, and at every turn boundary
        cuts = {p[-1] + 1 for p in rendered.frame_positions} | {s.end for s in rendered.spans}
        cuts = sorted(c for c in cuts if 0 < c <= len(rendered.input_ids)) + [len(rendered.input_ids)]
        cache, start, frame, pieces = DynamicCache(), 0, 0, []
        for end in sorted(set(cuts)):
            if end <= start:
                continue
            chunk = ids[:, start:end]
            n = int((chunk == model.token_ids.frame_id).sum()) // 10
            embeds = model.build_inputs_embeds(chunk, model.project_frames(frames[frame : frame + n]) if n else None)
            frame += n
            out = model.language_model(inputs_embeds=embeds, cache=cache, use_cache=True,
                                       position_ids=torch.arange(start, end)[None])
            pieces.append(out.logits[0])
            start = end
        streaming = torch.cat(pieces)
    assert len(pieces) > 10
    assert torch.allclose(streaming, offline, atol=1e-5), (streaming - offline).abs().max()
