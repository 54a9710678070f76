"""The training recipe: one loop, readable top to bottom.

``train(config)`` builds the tokenizer, the model and the datasets, wraps them with
``accelerate`` (data parallel under ``torchrun`` / ``accelerate launch``, mixed precision,
optional DeepSpeed), then runs AdamW with warmup + cosine decay, gradient accumulation and
clipping. It logs the loss split into LM and stream parts, the learning rate and tokens/s to
stdout and ``OUTPUT_DIR/metrics.jsonl``, saves resumable checkpoints (rank 0 writes), resumes
from the latest one on ``resume=true`` with the same loss curve as an uninterrupted run, and on
Ctrl-C / SIGTERM saves a checkpoint at the next step boundary, then raises KeyboardInterrupt.

Data order is a pure function of ``(seed, epoch)``: each epoch is a seeded permutation split
into one shard per process, so a resumed run skips exactly the batches already seen.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from ..collate import Batch, collate
from ..config import StreamVLMConfig
from ..errors import ConfigError
from ..language_model import apply_lora
from ..loss import streaming_loss
from ..model import StreamVLM
from ..presets import tiny_config, train_tokenizer, videollm_online_8b_config
from ..typed_json import save_json, to_dict
from .config import TrainConfig
from ..data.jsonl import ConversationRecord
from .data import build_dataset, read_records, training_texts
from .state import (
    checkpoint_dir, latest_checkpoint, load_trainer_state, rng_state, save_trainer_state, set_rng_state,
)


# ---------------------------------------------------------------------------- building blocks
def preset_config(name: str) -> StreamVLMConfig:
    if name == "tiny":
        return tiny_config()
    if name == "tiny-qwen2":
        return tiny_config("qwen2")
    return videollm_online_8b_config()


def build_model(cfg: TrainConfig, records: list[ConversationRecord], resume_from: Path | None) -> StreamVLM:
    """The model to train, with its tokenizer; from a checkpoint when resuming or ``init_from``."""
    lora = cfg.lora.settings()
    start = resume_from or (Path(cfg.model.init_from) if cfg.model.init_from else None)
    if start is not None:
        model = StreamVLM.from_pretrained(str(start), with_vision=cfg.model.with_vision)
        if lora is not None and model.config.lora is None:
            model.language_model = apply_lora(model.language_model, lora)
            model.config.lora = lora
    else:
        config = copy.deepcopy(cfg.model.config) if cfg.model.config else preset_config(cfg.model.preset)
        config.lora = lora
        tokenizer = None
        if cfg.tokenizer.path == "train":
            t = config.template
            pieces = [t.system_prompt, t.user_open, t.assistant_open, t.stream_open + t.stream_close, config.interval_token]
            tokenizer = train_tokenizer(training_texts(records) + pieces, cfg.tokenizer.vocab_size)
        elif cfg.tokenizer.path is not None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer.path)
        if tokenizer is not None and config.llm_config is not None:
            llm = dict(config.llm_config)
            if cfg.tokenizer.path == "train":  # a random LM sized for the new vocabulary
                llm.update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
            elif llm.get("vocab_size", 0) < len(tokenizer):
                raise ConfigError(f"model.config.llm_config.vocab_size: {llm.get('vocab_size')} is smaller than "
                                  f"the tokenizer's {len(tokenizer)} tokens")
            config.llm_config = llm
        if not cfg.model.with_vision and config.vision_hidden_size is None and config.vision.tower_config:
            config.vision_hidden_size = config.vision.tower_config.get("hidden_size")
        model = StreamVLM.from_config(config, tokenizer, with_vision=cfg.model.with_vision)
    model.config.stream_loss_weight = cfg.loss.tau
    # What is trained: LoRA adapters (or the whole LM without LoRA), the connector, maybe the tower.
    model.requires_grad_(False)
    for name, param in model.language_model.named_parameters():
        param.requires_grad_(lora is None or "lora_" in name)
    model.connector.requires_grad_(True)
    if cfg.model.train_vision and model.frame_encoder is not None:
        model.frame_encoder.requires_grad_(True)
    if cfg.gradient_checkpointing:
        lm = model.language_model
        if hasattr(lm, "activation_checkpointing_enable"):  # transformers >= 5.x name
            lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.train()


def check_frames(dataset: Dataset, model: StreamVLM, source: str) -> None:
    """Fail before training when the data's frames do not fit the model (first sample)."""
    sample = dataset[0]
    if sample.frames is None or sample.frames.dim() != 3:
        return  # raw pixels: shaped by the model's own preprocessing
    _, tokens, width = sample.frames.shape
    if width != model.config.vision_hidden_size:
        raise ConfigError(f"{source}: frame features have width {width}, but the model's connector expects "
                          f"{model.config.vision_hidden_size} (features from another vision tower?)")
    if tokens != model.config.tokens_per_frame:
        raise ConfigError(f"{source}: frame features have {tokens} tokens per frame, but the model uses "
                          f"{model.config.tokens_per_frame}")


def epoch_batches(num_samples: int, batch_size: int, epoch: int, seed: int, rank: int, world: int) -> list[list[int]]:
    """This process's micro-batches for ``epoch``: a seeded permutation, cut to a multiple of the
    world size and dealt round-robin, so every process gets as many batches as the others."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(num_samples, generator=generator).tolist()
    per_rank = num_samples // world
    mine = order[: per_rank * world][rank::world]
    return [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and norms (1-D parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.optim.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    warmup = math.ceil(cfg.optim.warmup_ratio * total_steps)
    if cfg.optim.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    return get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)


class StopRequest:
    """Turns SIGINT / SIGTERM into a flag checked at step boundaries (installed for the run)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------------- the recipe
def train(config: TrainConfig) -> Path:
    """Train as ``config`` says; return the output folder (checkpoints + ``metrics.jsonl``).

    Callable several times in one process (with different precisions): accelerate's per-process
    state is reset after each run.
    """
    from accelerate.state import AcceleratorState

    try:
        return _train(config)
    finally:
        AcceleratorState._reset_state()  # accelerate keeps one state per process otherwise


def _train(config: TrainConfig) -> Path:
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    cfg = config
    cfg.validate()
    out = Path(cfg.output_dir)

    # 1. Data records and the checkpoint to resume from (errors here cost no model loading).
    records = read_records(cfg.data)
    resume_from = None
    if cfg.resume is not False:
        resume_from = latest_checkpoint(out) if cfg.resume is True else Path(cfg.resume)
        if cfg.resume is not True and not (resume_from / "trainer_state.pt").is_file():
            raise ConfigError(f"resume: {cfg.resume} is not a training checkpoint (no trainer_state.pt)")

    # 2. Processes, precision, DeepSpeed.
    if cfg.precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("precision: fp16 needs a GPU; use bf16 or fp32 on CPU")
    plugin = None
    if cfg.deepspeed is not None:
        from accelerate import DeepSpeedPlugin

        from .deepspeed import fill_deepspeed_config, read_deepspeed_config

        plugin = DeepSpeedPlugin(hf_ds_config=fill_deepspeed_config(read_deepspeed_config(cfg.deepspeed), cfg))
    accelerator = Accelerator(
        mixed_precision={"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[cfg.precision],
        gradient_accumulation_steps=cfg.optim.grad_accum,
        deepspeed_plugin=plugin,
        cpu=not torch.cuda.is_available(),  # CPU-only: torchrun / accelerate launch give gloo data parallel
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.model.train_vision)],
    )
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    torch.manual_seed(cfg.seed + rank)

    # 3. Model, tokenizer and datasets.
    model = build_model(cfg, records, resume_from)
    raw_frames = cfg.data.videos is not None
    train_set = build_dataset(cfg.data, model.renderer, "train", model.frame_encoder)
    val_set = build_dataset(cfg.data, model.renderer, "val", model.frame_encoder) if cfg.data.val else None
    check_frames(train_set, model, cfg.data.train)
    if len(train_set) < world:
        raise ConfigError(f"data.train: {len(train_set)} conversations cannot feed {world} processes")
    pad_id, frame_id = model.token_ids.pad_id, model.token_ids.frame_id

    def loader(dataset: Dataset, batches: list[list[int]]) -> Iterator[Batch]:
        return iter(DataLoader(dataset, batch_sampler=batches, num_workers=cfg.data.num_workers,
                               collate_fn=lambda samples: collate(samples, pad_id)))

    micro_per_epoch = len(epoch_batches(len(train_set), cfg.optim.batch_size, 0, cfg.seed, rank, world))
    steps_per_epoch = math.ceil(micro_per_epoch / cfg.optim.grad_accum)
    total_steps = cfg.optim.max_steps or cfg.optim.epochs * steps_per_epoch

    # 4. Optimizer, schedule, accelerate wrapping, resumed state.
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped: StreamVLM = accelerator.unwrap_model(model)
    step = 0
    if resume_from is not None:
        state = load_trainer_state(resume_from)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
        step = int(state["step"])
        if main:
            print(f"resuming from {resume_from} at step {step}")

    # 5. Helpers: one forward + loss, checkpointing, validation, logging.
    def forward(batch: Batch):
        batch = batch.to(accelerator.device)
        frames = {"pixel_values" if raw_frames else "frame_tokens": batch.frames}
        with accelerator.autocast():
            logits = model(batch.input_ids, attention_mask=batch.attention_mask, **frames).logits
        stream_mask = batch.input_ids == frame_id
        parts = streaming_loss(logits, batch.labels, stream_mask, tau=cfg.loss.tau, kind=cfg.loss.kind,
                               focal_gamma=cfg.loss.focal_gamma, ohem_keep=cfg.loss.ohem_keep)
        return parts, int(batch.attention_mask.sum())

    def save_checkpoint(at: int) -> Path:
        path = checkpoint_dir(out, at)
        rngs = gather_object([rng_state()])  # one entry per rank
        if main:
            unwrapped.save_pretrained(str(path), full=unwrapped.config.llm_name_or_path is None)
            save_json(cfg, path / "train_config.json")
            save_trainer_state(path, {"step": at, "optimizer": optimizer.state_dict(),
                                      "scheduler": scheduler.state_dict(), "rng": list(rngs)})
        accelerator.wait_for_everyone()
        return path

    @torch.no_grad()
    def evaluate(epoch: int) -> dict[str, float]:
        model.eval()
        sums = torch.zeros(3, device=accelerator.device)  # [loss, lm_loss, stream_loss]
        batches = epoch_batches(len(val_set), cfg.optim.batch_size, 0, cfg.seed, rank, world)
        for batch in loader(val_set, batches):
            parts, _ = forward(batch)
            sums += torch.stack([parts.loss.detach().float(), parts.lm_loss.float(), parts.stream_loss.float()])
        sums = accelerator.reduce(sums, "sum") / max(len(batches) * world, 1)
        model.train()
        return {"val_loss": sums[0].item(), "val_lm_loss": sums[1].item(), "val_stream_loss": sums[2].item()}

    def log(record: dict) -> None:
        if main:
            with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))

    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_json(cfg, out / "train_config.json")
        if resume_from is None and (out / "metrics.jsonl").exists():
            (out / "metrics.jsonl").unlink()  # a fresh run starts a fresh log
        print(f"training {sum(p.numel() for p in unwrapped.parameters() if p.requires_grad):,} parameters on "
              f"{len(train_set)} conversations x {world} process(es): {total_steps} steps ({cfg.data.method})")
    accelerator.wait_for_everyone()

    # 6. The loop: one optimizer step = grad_accum micro-batches (gradients synced on the last).
    bar = tqdm(total=total_steps, initial=step, disable=not main, desc="train", dynamic_ncols=True)
    stop = StopRequest()
    window = {"loss": 0.0, "lm_loss": 0.0, "stream_loss": 0.0, "tokens": 0, "samples": 0, "micro": 0,
              "since": time.perf_counter()}
    with stop:
        while step < total_steps:
            epoch, index = divmod(step, steps_per_epoch)
            batches = epoch_batches(len(train_set), cfg.optim.batch_size, epoch, cfg.seed, rank, world)
            chunk = batches[index * cfg.optim.grad_accum : (index + 1) * cfg.optim.grad_accum]
            for i, batch in enumerate(loader(train_set, chunk)):
                sync = i == len(chunk) - 1
                with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                    parts, tokens = forward(batch)
                    accelerator.backward(parts.loss)
                window["loss"] += parts.loss.item()
                window["lm_loss"] += parts.lm_loss.item()
                window["stream_loss"] += parts.stream_loss.item()
                window["tokens"] += tokens
                window["samples"] += len(batch.keys)
                window["micro"] += 1
            grad_norm = None
            if cfg.optim.max_grad_norm is not None:
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)

            if step % cfg.log_every == 0 or step == total_steps:
                sums = accelerator.reduce(torch.tensor([window["loss"], window["lm_loss"], window["stream_loss"],
                                                        window["tokens"], window["samples"], window["micro"]],
                                                       dtype=torch.float64, device=accelerator.device), "sum")
                elapsed = time.perf_counter() - window["since"]
                record = {"step": step, "epoch": round(step / steps_per_epoch, 4),
                          "loss": sums[0].item() / sums[5].item(), "lm_loss": sums[1].item() / sums[5].item(),
                          "stream_loss": sums[2].item() / sums[5].item(), "lr": scheduler.get_last_lr()[0],
                          "tokens_per_s": sums[3].item() / max(elapsed, 1e-9), "conversations": int(sums[4].item())}
                if grad_norm is not None:
                    record["grad_norm"] = float(grad_norm)
                log(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}")
                window = {"loss": 0.0, "lm_loss": 0.0, "stream_loss": 0.0, "tokens": 0, "samples": 0, "micro": 0,
                          "since": time.perf_counter()}
            end_of_epoch = step % steps_per_epoch == 0
            if val_set is not None and ((cfg.eval_every and step % cfg.eval_every == 0) or end_of_epoch):
                log({"step": step, **evaluate(epoch)})
            if cfg.save_every and step % cfg.save_every == 0 and step < total_steps:
                save_checkpoint(step)
            requested = torch.tensor(float(stop.requested), device=accelerator.device)
            if accelerator.reduce(requested, "sum").item() > 0:
                path = save_checkpoint(step)
                bar.close()
                if main:
                    print(f"interrupted: saved {path}; continue with resume=true")
                raise KeyboardInterrupt
    bar.close()
    path = save_checkpoint(step)
    if main:
        print(f"done: {path}")
    accelerator.end_training()
    if world > 1:
        # gloo's worker thread frees the last collectives' tensors after they complete, which needs
        # the GIL. If the process group is destroyed first (when the DDP wrapper is garbage-collected
        # on return), the main thread holds the GIL while joining that thread: a deadlock that left
        # one rank hanging after "done". Sleeping releases the GIL so the worker finishes first.
        time.sleep(0.2)
    return out


def config_summary(cfg: TrainConfig) -> str:
    """The resolved config as indented JSON (printed by ``streamvlm train --print-config``)."""
    return json.dumps(to_dict(cfg), indent=2)
