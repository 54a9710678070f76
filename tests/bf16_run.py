"""A random model built in bfloat16 on the CPU, run through a stream; prints one JSON line with
its weight bytes and the process's peak memory (run in its own process by tests/model/test_materialise.py).

``python -m tests.bf16_run SIZE``: ``8b`` (Llama-3-8B + SigLIP-L/16-384 shapes with 2 layers
each), ``medium`` (the 8B vocabulary, a 1024-wide 2-layer LM, a 2-layer tower on 96-pixel frames: the
fast variant).
Steps: build; encode frames (the tower) and project them (the connector); a session whose KV cache
is bounded (evictions) and that replies at every frame; the batched step over two sessions.
"""

from __future__ import annotations

import json
import resource
import sys


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def main(size: str) -> None:
    import torch

    from streamvlm.engine import GenerationConfig, SinkWindowPolicy, StreamEngine
    from streamvlm.engine.batch import push_frames
    from streamvlm.model.presets import train_tokenizer, videollm_online_8b_config
    from streamvlm.model.vlm import StreamVLM

    torch.set_num_threads(2)
    config = videollm_online_8b_config()
    config.llm_config["num_hidden_layers"] = 2
    config.vision.tower_config["num_hidden_layers"] = 2
    if size == "medium":
        config.llm_config.update(hidden_size=1024, intermediate_size=2048, num_attention_heads=8,
                                 num_key_value_heads=2)
        config.vision.tower_config.update(intermediate_size=2048, image_size=96)
    tokenizer = train_tokenizer(vocab_size=512)
    baseline = peak_bytes()
    torch.manual_seed(0)
    model = StreamVLM.from_config(config, tokenizer, dtype=torch.bfloat16, device="cpu", init="cheap").eval()
    built = peak_bytes()
    tensors = [*model.parameters(), *model.buffers()]
    weights = sum(t.numel() * t.element_size() for t in model.parameters())
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 216, 384, 3), dtype=torch.uint8, generator=generator)
    with torch.inference_mode():  # one frame per tower call: bfloat16 batches are slow on some CPUs
        frames = torch.cat([model.project_frames(model.frame_encoder.encode_frames(images[i:i + 1]))
                            for i in range(len(images))])
    frames = frames.repeat(2, 1, 1)
    start = len(StreamEngine(model).layout.start)
    policy = SinkWindowPolicy(sink_tokens=start, window_tokens=24, chunk_tokens=12)
    engine = StreamEngine(model, GenerationConfig(threshold=1.0, max_new_tokens=2), kv_policy=policy)
    session = engine.new_session()
    replies = sum(e.role == "assistant" for i, frame in enumerate(frames) for e in session.push_frame(frame, 0.5 * i))
    pair = [engine.new_session(), engine.new_session()]
    batched = push_frames(pair, [frames[0], frames[1]], [0.0, 0.0])
    print(json.dumps({
        "weights": weights, "tensors": sum(t.numel() * t.element_size() for t in tensors), "dtypes": dtypes,
        "frame_dtype": str(frames.dtype), "baseline": baseline, "built": built, "peak": peak_bytes(),
        "replies": replies, "batched_replies": sum(e.role == "assistant" for events in batched for e in events),
        "evicted": session.evicted_tokens, "kv_length": session.kv_length, "kv_max": policy.max_tokens,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
