"""Files the documented commands expect to find, built small for the docs runner (tests/test_docs.py).

Each builder makes its files once per test session in a cache folder; :func:`install` then links
(or copies) them into a document's working folder under the names the documentation uses:
``video.mp4``, the released-adapter layout under hub-id-like folder names, an Ego4D-style
``narration.json``, and so on. Nothing here downloads anything.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
"""``../shared`` beside the checkout: the sample videos live in ``shared/data/videos``."""

OPENAI_KEY = "sk-docs-runner"
"""The key the fake OpenAI-compatible server expects (``export OPENAI_API_KEY=...`` gets this value)."""


# ---------------------------------------------------------------------------- builders
def _world(cache: Path, name: str, videos: int, seed: int, duration: float, split: str = "auto") -> Path:
    from streamvlm.data.synth import generate_world

    out = cache / name
    if not (out / "world.json").is_file():
        generate_world(out, videos, seed, duration=duration, size=64, split=split, workers=1, progress=False)
    return out


def clip(cache: Path) -> Path:
    """A 40-second 64-pixel synthetic clip (h264, 8 fps): long enough for a query at 30 s."""
    world = _world(cache, "clip-world", 1, 3, 40.0, split="test")
    return next((world / "videos").glob("*.mp4"))


def short_clip(cache: Path) -> Path:
    """An 8-second 64-pixel synthetic clip, for examples that describe 'a 6-second clip'."""
    world = _world(cache, "short-world", 1, 5, 8.0, split="test")
    return next((world / "videos").glob("*.mp4"))


def frame_jpg(cache: Path) -> Path:
    """A 128-pixel JPEG: the first frame of a synthetic video."""
    out = cache / "frame.jpg"
    if not out.is_file():
        from PIL import Image

        from streamvlm.data.synth import plan_video, render_video_frames

        Image.fromarray(next(iter(render_video_frames(plan_video(seed=0, index=0, duration=1, size=128))))).save(out)
    return out


def narration_json(cache: Path) -> Path:
    """An Ego4D ``narration.json`` (two synthetic videos' narrations in the real format)."""
    return _world(cache, "narration-world", 2, 4, 20.0) / "annotations" / "narration.json"


def hub_llm(cache: Path) -> Path:
    """A tiny Llama + BPE tokenizer saved like a hub checkpoint (plays Meta-Llama-3-8B-Instruct)."""
    out = cache / "hub" / "llm"
    if not (out / "config.json").is_file():
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        from streamvlm.model.presets import tiny_llm_config, train_tokenizer

        tok = train_tokenizer()
        cfg = tiny_llm_config("llama", vocab_size=len(tok))
        cfg.pop("model_type")
        torch.manual_seed(0)
        LlamaForCausalLM(LlamaConfig(**cfg)).save_pretrained(out)
        tok.save_pretrained(out)
    return out


def hub_vision(cache: Path) -> Path:
    """A tiny SigLIP vision tower saved like a hub checkpoint (plays siglip-large-patch16-384)."""
    out = cache / "hub" / "vision"
    if not (out / "config.json").is_file():
        import torch
        from transformers import SiglipVisionConfig, SiglipVisionModel

        torch.manual_seed(0)
        SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                             num_attention_heads=2, image_size=32, patch_size=8)).save_pretrained(out)
    return out


def adapter(cache: Path) -> Path:
    """A PEFT LoRA adapter saved the way the released videollm-online-8b-v1plus is (MISSION 1.6):
    LoRA on the upstream regex with ``modules_to_save=["connector"]``, over :func:`hub_llm`
    (the connector maps the :func:`hub_vision` width, 32, to the LLM's)."""
    out = cache / "hub" / "adapter"
    if (out / "adapter_model.safetensors").is_file():
        return out
    import torch
    from peft import LoraConfig, get_peft_model
    from torch import nn
    from transformers import LlamaForCausalLM

    from streamvlm.model.config import UPSTREAM_LORA_TARGETS

    class UpstreamLiveLlama(LlamaForCausalLM):  # upstream: the causal LM owns the connector
        def __init__(self, config):
            super().__init__(config)
            self.connector = nn.Sequential(nn.Linear(32, config.hidden_size), nn.GELU(),
                                           nn.Linear(config.hidden_size, config.hidden_size))

    import warnings

    # the upstream side is peft on transformers 5 with lm_head among the LoRA targets: known, harmless warnings
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Setting `save_embedding_layers`", category=UserWarning)
    model = UpstreamLiveLlama.from_pretrained(hub_llm(cache))
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules=UPSTREAM_LORA_TARGETS,
                                             modules_to_save=["connector"], task_type="CAUSAL_LM"))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    model.save_pretrained(out)
    return out


def benchmark_data(cache: Path, work: Path) -> None:
    """The three benchmarks' files where docs/benchmarks.md names them (OVO-Bench's
    ``data/ovo_bench_new.json`` and ``data/src_videos``, StreamingBench's ``src/data/questions_*.json``
    and ``data``, ProactiveVideoQA's ``EGO/anno.json``), in their published formats: the synthetic
    edition of a two-clip world, whose video paths (``videos/UID.mp4``) the documented roots hold."""
    from streamvlm.benchmarks.synthetic import make_editions

    world = _world(cache, "benchmark-world", 2, 9, 20.0, split="test")
    editions = cache / "benchmark-editions"
    if not (editions / "ovo-bench" / "ovo_bench_new.json").is_file():
        make_editions(world, editions)
    layout = {
        "OVO-Bench/data/src_videos": {"ovo-bench/ovo_bench_new.json": "OVO-Bench/data/ovo_bench_new.json"},
        "StreamingBench/data": {f"streamingbench/questions_{k}.json": f"StreamingBench/src/data/questions_{k}.json"
                                for k in ("real", "sqa", "proactive")},
        "ProactiveVideoQA/EGO": {"proactivevideoqa/SYNTH/anno.json": "ProactiveVideoQA/EGO/anno.json"},
    }
    for root, files in layout.items():
        _link(world / "videos", work / root / "videos")
        for source, name in files.items():
            _copy(editions / source, work / name)
    broken = [{"id": 7, "task": "EPM", "video": "a.mp4", "realtime": 5, "question": "What did I take?",
               "answer": "a cup", "options": ["a cup", "a pen", "a box", "a bowl"], "gt": 4}]
    (work / "broken.json").write_text(json.dumps(broken), encoding="utf-8")


def ovo_results(work: Path) -> None:
    """Two results files in the shape OVO-Bench's harness writes (``results/MODEL/*.json``)."""
    def choice(task: str, response: str, letter: str) -> dict[str, Any]:
        return {"id": 0, "video": "v.mp4", "task": task, "question": "q", "response": response, "ground_truth": letter}

    folder = work / "OVO-Bench/results/MyModel"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MyModel_EPM_OCR_offline.json").write_text(json.dumps({
        "backward": [choice("EPM", "A", "A"), choice("EPM", "B", "C")],
        "realtime": [choice("OCR", "C", "C"), choice("ACR", "D. a cup", "D")], "forward": []}))
    (folder / "MyModel_REC_SSR_CRR_offline.json").write_text(json.dumps({"backward": [], "realtime": [], "forward": [
        {"id": 1, "task": "REC", "video": "v.mp4", "test_info": [{"realtime": 3, "count": 2, "response": "2"}]},
        {"id": 2, "task": "SSR", "video": "v.mp4", "test_info": [{"realtime": 3, "step": "s", "type": 0,
                                                                  "response": "No"}]},
        {"id": 3, "task": "CRR", "video": "v.mp4", "test_info": [{"realtime": 3, "type": 1, "response": "No"}]}]}))


def first_json_block(doc: Path, needle: str) -> Any:
    """The JSON value of the first ```json block of ``doc`` that contains ``needle``."""
    text = doc.read_text(encoding="utf-8")
    for block in text.split("```json")[1:]:
        body = block.split("```")[0]
        if needle in body:
            return json.loads(body)
    raise AssertionError(f"{doc}: no ```json block containing {needle!r}")


# ---------------------------------------------------------------------------- the fake server
class FakeOpenAI:
    """An OpenAI-compatible ``POST /v1/chat/completions`` on 127.0.0.1 (a free port), answering
    every prompt with a fixed sentence; it needs ``Authorization: Bearer OPENAI_KEY``."""

    def __init__(self, reply: str = "You pick up the red cup.") -> None:
        self.reply, self.hits = reply, 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                owner.hits += 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.headers.get("Authorization") != f"Bearer {OPENAI_KEY}":
                    status, payload = 401, {"error": {"message": "Incorrect API key provided"}}
                elif self.path != "/v1/chat/completions":
                    status, payload = 404, {"error": {"message": f"no route {self.path}"}}
                else:
                    status, payload = 200, {
                        "id": f"chatcmpl-{owner.hits}", "object": "chat.completion", "model": body.get("model"),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": owner.reply}}]}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# ---------------------------------------------------------------------------- placing files
def _link(target: Path, name: Path) -> None:
    name.parent.mkdir(parents=True, exist_ok=True)
    if name.exists() or name.is_symlink():
        return
    try:
        name.symlink_to(target, target_is_directory=target.is_dir())
    except OSError:  # no symlinks here: copy
        (shutil.copytree if target.is_dir() else shutil.copy2)(target, name)


def _copy(target: Path, name: Path) -> None:
    """A real copy, for files a command may rewrite or put things beside."""
    name.parent.mkdir(parents=True, exist_ok=True)
    (shutil.copytree if target.is_dir() else shutil.copy2)(target, name)


def _write_jsonl(name: Path, records: list[Any]) -> None:
    name.parent.mkdir(parents=True, exist_ok=True)
    name.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


FIXTURES: dict[str, Callable[[Path, Path], None]] = {
    # a clip for `streamvlm narrate video.mp4 ...`
    "video.mp4": lambda cache, work: _link(clip(cache), work / "video.mp4"),
    # the frame the client example of docs/serve.md sends
    "frame.jpg": lambda cache, work: _link(frame_jpg(cache), work / "frame.jpg"),
    # the released-adapter example: local folders named like the hub ids win over the Hub
    "videollm-online": lambda cache, work: (
        _link(adapter(cache), work / "path/to/videollm-online-8b-v1plus"),
        _link(hub_llm(cache), work / "meta-llama/Meta-Llama-3-8B-Instruct"),
        _link(hub_vision(cache), work / "google/siglip-large-patch16-384")),
    # `--backend transformers --model meta-llama/Meta-Llama-3-8B-Instruct`: the tiny Llama
    "hub-llm": lambda cache, work: _link(hub_llm(cache), work / "meta-llama/Meta-Llama-3-8B-Instruct"),
    # an Ego4D narration file for the generation examples
    "narration.json": lambda cache, work: _copy(narration_json(cache), work / "narration.json"),
    # the request documented in docs/generation.md, as a one-line JSONL file
    "requests.jsonl": lambda cache, work: _write_jsonl(
        work / "requests.jsonl", [first_json_block(REPO / "docs/generation.md", '"kind"')]),
    # the downstream question documented in docs/evaluation.md
    "questions.jsonl": lambda cache, work: _write_jsonl(
        work / "questions.jsonl", [first_json_block(REPO / "docs/evaluation.md", '"task"')]),
    # the conversation documented in docs/data-format.md and a clip under the name it uses
    "my.jsonl": lambda cache, work: (
        _write_jsonl(work / "my.jsonl", [first_json_block(REPO / "docs/data-format.md", "my_video.mp4")]),
        _copy(short_clip(cache), work / "my_videos/my_video.mp4")),  # a symlink would leave the data root
    # DeepSpeed configs are named relative to the checkout (configs/deepspeed/zero2.json)
    "configs": lambda cache, work: _link(REPO / "configs", work / "configs"),
    # the benchmarks' annotation files, in their published formats, where docs/benchmarks.md names them
    "benchmark-data": benchmark_data,
    # OVO-Bench results files for `streamvlm benchmark score ovo-bench`
    "ovo-results": lambda cache, work: ovo_results(work),
}
"""Fixture name -> installer(cache folder, working folder)."""


def install(names: list[str], cache: Path, work: Path) -> None:
    """Prepare ``work`` for a document: its fixtures, and ``../shared`` when this checkout has one."""
    work.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    if SHARED.is_dir():
        _link(SHARED, work.parent / "shared")
    for name in names:
        FIXTURES[name](cache, work)


def environment(server: FakeOpenAI | None) -> dict[str, str]:
    """Environment variables for the documented commands (never the network)."""
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if server is not None:
        env["OPENAI_API_KEY"] = OPENAI_KEY
    return env


