"""Shared test helpers: tiny models and a word-level tokenizer whose tokens are easy to read."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from streamvlm.model.config import StreamVLMConfig
from streamvlm.model.presets import tiny_config, train_tokenizer
from streamvlm.model.vlm import StreamVLM

REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = REPO.parent / "shared" / "data" / "videos"

WORDS = ["<s>", "</s>", "<pad>", "\n", "[", "]", ",", ":", " ", ".", "?", "User", "Assistant",
         "cool", "so", "what", "narrate", "You", "pick", "up", "the", "cup", "§", "|"]


def word_tokenizer() -> PreTrainedTokenizerFast:
    """One token per word, per punctuation mark, per space and per newline (ids = WORDS order)."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\w+|\s|[^\w\s]"), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_model(llm: str = "llama", vision: str = "siglip", seed: int = 0, **kwargs) -> StreamVLM:
    import torch

    torch.manual_seed(seed)
    config: StreamVLMConfig = tiny_config(llm, vision, **kwargs)
    return StreamVLM.from_config(config, train_tokenizer()).eval()


def textured_frame(h: int, w: int, seed: int = 0):
    """uint8 RGB ``[h, w, 3]``: smooth colour waves plus fine stripes (resize kernels differ on it)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    chans = [40 + 90 * (0.5 + 0.5 * np.sin(2 * np.pi * (a * yy + b * xx) + c)) + 60 * ((np.arange(w) // 3) % 2)
             for a, b, c in rng.uniform(0.5, 3.0, size=(3, 3))]
    return np.stack(chans, axis=-1).round().clip(0, 255).astype(np.uint8)


def write_textured_video(path: Path, h: int, w: int, frames: int = 4, fps: int = 2,
                         comment: str | None = None) -> Path:
    """An H.264 (yuv420p) video of ``frames`` textured frames of ``h x w`` at ``fps``, with
    ``comment`` as its container's comment tag when given."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as container:
        if comment is not None:
            container.metadata["comment"] = comment
        stream = container.add_stream("libx264", rate=fps, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(textured_frame(h, w, seed=i), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def ffmpeg_upstream(frame, size: int):
    """uint8 RGB ``[size, size, 3]``: upstream's own ffmpeg filter on a decoded PyAV frame
    (``-sws_flags bicubic``, ``scale='if(gt(iw,ih),S,-2)':'if(gt(iw,ih),-2,S)'``, centred black
    ``pad``), run by libavfilter with the frame's colour tags (as the ffmpeg command passes them),
    then converted to RGB."""
    import av

    tags = {1: "bt709", 5: "bt470bg", 6: "smpte170m"}.get(int(frame.colorspace))
    ranges = {1: "tv", 2: "pc"}.get(int(frame.color_range))
    extra = (f":colorspace={tags}" if tags else "") + (f":range={ranges}" if ranges else "")
    graph = av.filter.Graph()
    source = graph.add("buffer", f"video_size={frame.width}x{frame.height}:pix_fmt={frame.format.name}"
                                 f":time_base=1/30:pixel_aspect=1/1{extra}")
    scale = graph.add("scale", f"w='if(gt(iw,ih),{size},-2)':h='if(gt(iw,ih),-2,{size})':flags=bicubic")
    pad = graph.add("pad", f"{size}:{size}:(ow-iw)/2:(oh-ih)/2:color=#000000")
    sink = graph.add("buffersink")
    source.link_to(scale)
    scale.link_to(pad)
    pad.link_to(sink)
    graph.configure()
    frame.pts = None
    graph.push(frame)
    return graph.pull().reformat(format="rgb24").to_ndarray()


def serving_parts(model: StreamVLM, generation=None, *, fit=None, queue_frames: int = 16):
    """A scheduler and a model runner over ``model`` (unbounded KV cache), not started: a test
    runs their plans itself (``runner.run(scheduler.plan())``), so every batch is known."""
    from streamvlm.engine.defaults import resolve_stream
    from streamvlm.engine.options import StreamOptions
    from streamvlm.serve.limits import ServeLimits
    from streamvlm.serve.metrics import ServeMetrics
    from streamvlm.serve.model_runner import ModelRunner
    from streamvlm.serve.scheduler import Scheduler

    limits, metrics = ServeLimits(queue_frames=queue_frames), ServeMetrics()
    scheduler = Scheduler(limits, metrics)
    runner = ModelRunner(resolve_stream(model, StreamOptions(kv_budget=0), generation), scheduler, limits=limits,
                         metrics=metrics, fit=fit)
    return scheduler, runner
