"""The training recipe, readable top to bottom (as torchtune's recipes are).

``train(config)`` runs a :class:`TrainingRecipe` in two stages:

* ``setup()``: data records and the checkpoint to resume from (cheap checks first, before any
  model loads), the ``accelerate`` accelerator (data parallel under ``torchrun`` / ``accelerate
  launch``, mixed precision, optional DeepSpeed), the model, the datasets, AdamW with warmup +
  cosine decay (:mod:`streamvlm.train.optim`), the resumed state, the output folder.
* ``train()``: the loop. One optimizer step = ``grad_accum`` micro-batches (:meth:`~TrainingRecipe.train_step`:
  forward, :meth:`~streamvlm.model.vlm.StreamVLM.loss`, backward), a finiteness check, clipping, the
  update; then logging (loss split into LM and stream parts, lr, tokens/s, to stdout and
  ``OUTPUT_DIR/metrics.jsonl``), validation and periodic checkpoints.

Checkpoints (``checkpoint-NNNNNN``, rank 0 writes) resume with the same loss curve as an
uninterrupted run. Ctrl-C / SIGTERM saves a checkpoint at the next step boundary, then raises
KeyboardInterrupt. A NaN/inf loss or gradient norm raises :class:`TrainingDiverged` on every
process before anything of that step is saved.

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
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset

from ..data.collate import Batch, collate
from ..data.jsonl import ConversationRecord, read_jsonl
from ..errors import ConfigError, UserError
from ..model.checkpoint import load_pretrained, save_pretrained
from ..model.language_model import apply_lora
from ..model.presets import MODEL_PRESETS, train_tokenizer
from ..model.vlm import StreamVLM, StreamVLMOutput
from ..settings import dumps, save_json
from .config import TrainConfig
from .data import build_dataset, read_records, training_texts
from .optim import make_optimizer, make_scheduler
from .state import (
    checkpoint_dir,
    latest_checkpoint,
    load_trainer_state,
    rng_state,
    save_trainer_state,
    set_rng_state,
)

if TYPE_CHECKING:
    from accelerate import Accelerator


class TrainingDiverged(UserError):
    """A micro-batch loss or the gradient norm became NaN or infinite: the run stops on every
    process before the step's update, and nothing more is saved."""


# ---------------------------------------------------------------------------- building blocks
def build_model(cfg: TrainConfig, records: list[ConversationRecord], resume_from: Path | None) -> StreamVLM:
    """The model to train, with its tokenizer; from a checkpoint when resuming or ``init_from``."""
    lora = cfg.lora.settings()
    start = resume_from or (Path(cfg.model.init_from) if cfg.model.init_from else None)
    if start is not None:
        model = load_pretrained(start, with_vision=cfg.model.with_vision)
        if lora is not None and model.config.lora is None:
            model.language_model = apply_lora(model.language_model, lora)
            model.config.lora = lora
    else:
        config = copy.deepcopy(cfg.model.config) if cfg.model.config else MODEL_PRESETS[cfg.model.preset]()
        config.lora = lora
        tokenizer = None
        if cfg.tokenizer.path == "train":
            t = config.template
            pieces = [t.system_prompt, t.user_open, t.assistant_open, t.stream_open + t.stream_close,
                      config.interval_token]
            corpus = read_jsonl(cfg.tokenizer.corpus) if cfg.tokenizer.corpus else records
            tokenizer = train_tokenizer(training_texts(corpus) + pieces, cfg.tokenizer.vocab_size)
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
LOSS_PARTS = ("loss", "lm_loss", "stream_loss")


@dataclass
class _Window:
    """This process's running sums since the last log line."""

    loss: float = 0.0
    lm_loss: float = 0.0
    stream_loss: float = 0.0
    tokens: int = 0
    samples: int = 0
    micro: int = 0
    since: float = field(default_factory=time.perf_counter)

    def add(self, micro: dict[str, float]) -> None:
        for key in (*LOSS_PARTS, "tokens", "samples"):
            setattr(self, key, getattr(self, key) + micro[key])
        self.micro += 1


class TrainingRecipe:
    """One training run: :meth:`setup`, then :meth:`train` (see the module docstring)."""

    def __init__(self, config: TrainConfig) -> None:
        self.cfg = config
        self.out = Path(config.output_dir)
        self.step = 0  # optimizer steps done

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Everything the loop needs, cheapest checks first."""
        cfg = self.cfg
        cfg.check_paths()
        records = read_records(cfg.data)  # data errors cost no model loading
        self.resume_from = self._resume_point()
        self.accelerator = self._make_accelerator()
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.main = self.accelerator.is_main_process
        torch.manual_seed(cfg.seed + self.rank)
        model = build_model(cfg, records, self.resume_from)
        self._setup_data(model)
        own_lr = (model.connector.parameters(), cfg.optim.connector_lr) if cfg.optim.connector_lr else None
        optimizer = make_optimizer(model.parameters(), cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.betas,
                                   own_lr=own_lr)
        self.scheduler = make_scheduler(optimizer, cfg.optim.warmup_ratio, self.total_steps, cfg.optim.schedule)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.unwrapped: StreamVLM = self.accelerator.unwrap_model(self.model)
        if self.resume_from is not None:
            self._load_trainer_state(self.resume_from)
        self._start_output()

    def _resume_point(self) -> Path | None:
        resume = self.cfg.resume
        if resume is False:
            return None
        if resume is True:
            return latest_checkpoint(self.out)  # None: nothing saved yet, start afresh
        if not (Path(resume) / "trainer_state.pt").is_file():
            raise ConfigError(f"resume: {resume} is not a training checkpoint (no trainer_state.pt)")
        return Path(resume)

    def _make_accelerator(self) -> Accelerator:
        """Processes (gloo data parallel on CPU under torchrun), precision, DeepSpeed."""
        from accelerate import Accelerator, DistributedDataParallelKwargs

        cfg = self.cfg
        if cfg.precision == "fp16" and not torch.cuda.is_available():
            raise ConfigError("precision: fp16 needs a GPU; use bf16 or fp32 on CPU")
        plugin = None
        if cfg.deepspeed is not None:
            from accelerate import DeepSpeedPlugin

            from .deepspeed import fill_deepspeed_config, read_deepspeed_config

            plugin = DeepSpeedPlugin(hf_ds_config=fill_deepspeed_config(read_deepspeed_config(cfg.deepspeed), cfg))
        return Accelerator(
            mixed_precision={"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[cfg.precision],
            gradient_accumulation_steps=cfg.optim.grad_accum,
            deepspeed_plugin=plugin,
            cpu=not torch.cuda.is_available(),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.model.train_vision)],
        )

    def _setup_data(self, model: StreamVLM) -> None:
        """Datasets (checked against the model), the collate pad id and the step counts."""
        cfg = self.cfg
        self.raw_frames = cfg.data.videos is not None  # pixels [N, 3, S, S], else features [N, T, D]
        frames = model.frame_record()  # features made another way are refused
        self.train_set = build_dataset(cfg.data, model.renderer, "train", model.frame_encoder, frames)
        self.val_set = build_dataset(cfg.data, model.renderer, "val", model.frame_encoder, frames) \
            if cfg.data.val else None
        check_frames(self.train_set, model, cfg.data.train)
        if len(self.train_set) < self.world:
            raise ConfigError(f"data.train: {len(self.train_set)} conversations cannot feed {self.world} processes")
        self.pad_id = model.token_ids.pad_id
        self.steps_per_epoch = math.ceil(len(self._batches(self.train_set, epoch=0)) / cfg.optim.grad_accum)
        self.total_steps = cfg.optim.max_steps or cfg.optim.epochs * self.steps_per_epoch

    def _load_trainer_state(self, path: Path) -> None:
        state = load_trainer_state(path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"][self.rank] if self.rank < len(state["rng"]) else state["rng"][0])
        self.step = int(state["step"])
        if self.main:
            print(f"resuming from {path} at step {self.step}")

    def _start_output(self) -> None:
        """Rank 0 writes ``train_config.json`` and starts ``metrics.jsonl`` afresh unless resuming."""
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_json(self.cfg, self.out / "train_config.json")
            if self.resume_from is None and (self.out / "metrics.jsonl").exists():
                (self.out / "metrics.jsonl").unlink()
            trained = sum(p.numel() for p in self.unwrapped.parameters() if p.requires_grad)
            print(f"training {trained:,} parameters on {len(self.train_set)} conversations x {self.world} "
                  f"process(es): {self.total_steps} steps ({self.cfg.data.method})")
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ data order
    def _batches(self, dataset: Dataset, epoch: int) -> list[list[int]]:
        """This process's micro-batches (sample indices) of ``epoch``."""
        return epoch_batches(len(dataset), self.cfg.optim.batch_size, epoch, self.cfg.seed, self.rank, self.world)

    def _loader(self, dataset: Dataset, batches: list[list[int]]) -> Iterator[Batch]:
        return iter(DataLoader(dataset, batch_sampler=batches, num_workers=self.cfg.data.num_workers,
                               collate_fn=partial(collate, pad_id=self.pad_id)))

    def _step_batches(self, step: int) -> list[list[int]]:
        """The ``grad_accum`` micro-batches of optimizer step ``step`` (0-based)."""
        epoch, index = divmod(step, self.steps_per_epoch)
        accum = self.cfg.optim.grad_accum
        return self._batches(self.train_set, epoch)[index * accum : (index + 1) * accum]

    # ------------------------------------------------------------------ one micro-batch
    def _loss(self, batch: Batch) -> StreamVLMOutput:
        """Forward + loss (:meth:`StreamVLM.loss` with ``config.loss``) of a micro-batch:
        ``input_ids``, ``labels [B, L]``; frames ``[N, T, D_vision]`` or pixels ``[N, 3, S, S]``."""
        batch = batch.to(self.accelerator.device)
        frames = {"pixel_values" if self.raw_frames else "frame_tokens": batch.frames}
        with self.accelerator.autocast():
            return self.model(batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels,
                              loss_options=self.cfg.loss, **frames)

    def train_step(self, batch: Batch, sync: bool = True) -> dict[str, float]:
        """Forward, loss and backward of one micro-batch; gradients are all-reduced only when
        ``sync`` (the last micro-batch of a step). Returns its loss parts, tokens and samples."""
        with contextlib.nullcontext() if sync else self.accelerator.no_sync(self.model):
            out = self._loss(batch)
            self.accelerator.backward(out.loss)
        return {"loss": out.loss.item(), "lm_loss": out.lm_loss.item(), "stream_loss": out.stream_loss.item(),
                "tokens": int(batch.attention_mask.sum()), "samples": len(batch.keys)}

    # ------------------------------------------------------------------ the loop
    def train(self) -> Path:
        """Run the optimizer steps left; save the final checkpoint; return the output folder."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.main, desc="train", dynamic_ncols=True)
        window = _Window()
        try:
            with StopRequest() as stop:
                while self.step < self.total_steps:
                    chunk = self._step_batches(self.step)
                    micro = [self.train_step(batch, sync=i == len(chunk) - 1)
                             for i, batch in enumerate(self._loader(self.train_set, chunk))]
                    grad_norm = self._optimizer_step(micro)  # raises TrainingDiverged on every process
                    bar.update(1)
                    for m in micro:
                        window.add(m)
                    if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                        record = self._window_record(window, grad_norm)
                        self._log(record, bar)
                        bar.set_postfix(loss=f"{record['loss']:.3f}")
                        window = _Window()
                    end_of_epoch = self.step % self.steps_per_epoch == 0
                    eval_due = bool(cfg.eval_every) and self.step % cfg.eval_every == 0
                    if self.val_set is not None and (eval_due or end_of_epoch):
                        self._log({"step": self.step, **self.evaluate()}, bar)
                    if cfg.save_every and self.step % cfg.save_every == 0 and self.step < self.total_steps:
                        self.save_checkpoint(self.step)
                    if self._any_process(stop.requested):
                        path = self.save_checkpoint(self.step)
                        bar.close()
                        if self.main:
                            print(f"interrupted: saved {path}; continue with resume=true")
                        raise KeyboardInterrupt
        except BaseException:
            bar.close()
            self._let_gloo_finish()
            raise
        bar.close()
        path = self.save_checkpoint(self.step)
        if self.main:
            print(f"done: {path}")
        self.accelerator.end_training()
        self._let_gloo_finish()
        return self.out

    def _optimizer_step(self, micro: list[dict[str, float]]) -> float | None:
        """Measure (and clip, if ``optim.max_grad_norm``) the gradient norm, stop if the step
        diverged, then update the weights and the learning rate. Returns the gradient norm."""
        max_norm = self.cfg.optim.max_grad_norm or math.inf  # inf: measured, not clipped
        grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), max_norm)
        grad_norm = None if grad_norm is None else float(grad_norm)  # None: DeepSpeed without a norm
        self._check_finite(micro, grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return grad_norm

    def _check_finite(self, micro: list[dict[str, float]], grad_norm: float | None) -> None:
        """Raise :class:`TrainingDiverged` on every process when any process saw a NaN/inf
        micro-batch loss or gradient norm. Under fp16 an inf gradient is not divergence (loss
        scaling, AMP's or DeepSpeed's, skips that step), so only the losses count there."""
        grad_bad = grad_norm is not None and self.cfg.precision != "fp16" and not math.isfinite(grad_norm)
        loss_bad = not all(math.isfinite(m[k]) for m in micro for k in LOSS_PARTS)
        sums = [float(loss_bad or grad_bad), len(micro)] + [sum(m[k] for m in micro) for k in LOSS_PARTS]
        sums = self.accelerator.reduce(torch.tensor(sums, dtype=torch.float64, device=self.accelerator.device), "sum")
        if sums[0].item() == 0:
            return
        parts = ", ".join(f"{k}={(sums[2 + i] / sums[1]).item():.4g}" for i, k in enumerate(LOSS_PARTS))
        norm = "" if grad_norm is None else f", grad_norm={grad_norm:.4g}"
        raise TrainingDiverged(
            f"training diverged at step {self.step + 1}: a loss or the gradient norm is not finite ({parts}{norm}; "
            f"means over the step's micro-batches); nothing was saved for this step; "
            f"try a lower optim.lr (now {self.cfg.optim.lr:g})")

    def _any_process(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any process (a collective: every process must call it)."""
        return self.accelerator.reduce(torch.tensor(float(flag), device=self.accelerator.device), "sum").item() > 0

    # ------------------------------------------------------------------ logging, validation, checkpoints
    def _window_record(self, window: _Window, grad_norm: float | None) -> dict:
        """The log line of ``window``, summed over processes (losses: mean per micro-batch)."""
        sums = self.accelerator.reduce(
            torch.tensor([window.loss, window.lm_loss, window.stream_loss, window.tokens, window.samples, window.micro],
                         dtype=torch.float64, device=self.accelerator.device), "sum").tolist()
        loss, lm_loss, stream_loss, tokens, samples, micro = sums
        record = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4), "loss": loss / micro,
                  "lm_loss": lm_loss / micro, "stream_loss": stream_loss / micro, "lr": self.scheduler.get_last_lr()[0],
                  "tokens_per_s": tokens / max(time.perf_counter() - window.since, 1e-9), "conversations": int(samples)}
        if grad_norm is not None:
            record["grad_norm"] = grad_norm
        return record

    def _log(self, record: dict, bar) -> None:
        """Rank 0: append ``record`` to ``metrics.jsonl`` and print it above the progress bar."""
        if self.main:
            with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            bar.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean validation loss parts over ``data.val`` (all processes)."""
        self.model.eval()
        sums = torch.zeros(3, device=self.accelerator.device)  # [loss, lm_loss, stream_loss]
        batches = self._batches(self.val_set, epoch=0)
        for batch in self._loader(self.val_set, batches):
            out = self._loss(batch)
            sums += torch.stack([out.loss.detach().float(), out.lm_loss.float(), out.stream_loss.float()])
        sums = self.accelerator.reduce(sums, "sum") / max(len(batches) * self.world, 1)
        self.model.train()
        return {"val_loss": sums[0].item(), "val_lm_loss": sums[1].item(), "val_stream_loss": sums[2].item()}

    def save_checkpoint(self, step: int) -> Path:
        """``OUTPUT_DIR/checkpoint-NNNNNN``: the model, ``train_config.json`` and the trainer
        state (optimizer, scheduler, step, every rank's RNG). Rank 0 writes; all ranks wait."""
        from accelerate.utils import gather_object

        path = checkpoint_dir(self.out, step)
        rngs = gather_object([rng_state()])  # one entry per rank
        if self.main:
            save_pretrained(self.unwrapped, path, full=self.unwrapped.config.llm_name_or_path is None)
            save_json(self.cfg, path / "train_config.json")
            save_trainer_state(path, {"step": step, "optimizer": self.optimizer.state_dict(),
                                      "scheduler": self.scheduler.state_dict(), "rng": list(rngs)})
        self.accelerator.wait_for_everyone()
        return path

    def _let_gloo_finish(self) -> None:
        if self.world > 1:
            # gloo's worker thread frees the last collectives' tensors after they complete, which needs
            # the GIL. If the process group is destroyed first (when the DDP wrapper is garbage-collected
            # on return), the main thread holds the GIL while joining that thread: a deadlock that left
            # one rank hanging after "done". Sleeping releases the GIL so the worker finishes first.
            time.sleep(0.2)


def train(config: TrainConfig) -> Path:
    """Train as ``config`` says; return the output folder (checkpoints + ``metrics.jsonl``).

    Callable several times in one process (with different precisions): accelerate's per-process
    state is reset after each run.
    """
    from accelerate.state import AcceleratorState

    try:
        return _run(config)
    finally:
        AcceleratorState._reset_state()  # accelerate keeps one state per process otherwise


def _run(config: TrainConfig) -> Path:
    recipe = TrainingRecipe(config)
    recipe.setup()
    return recipe.train()


def config_summary(cfg: TrainConfig) -> str:
    """The resolved config as indented JSON (printed by ``streamvlm train --print-config``)."""
    return dumps(cfg)
