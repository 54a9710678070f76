"""CPU threads that are right by default: decoding, frame encoding and the LM share the cores.

A streaming run has three kinds of CPU work at once: the reader thread decodes the video (PyAV /
FFmpeg, ``decoder_threads`` threads of its own), the encoder thread runs the frame encoder and the
caller's thread runs the language model, both with torch's intra-op threads. Torch's own default
(one intra-op thread per core of the machine, ``os.cpu_count()``) ignores the CPUs this process
may actually use (its affinity mask, a container's CPU quota, other processes of a ``torchrun``
job) and the decoder beside it; on a 2-core machine it made the LM, the encoder and the decoder
fight over the cores (issue 12).

:func:`plan_threads` decides, without torch, and :func:`configure_threads` applies:

* the usable CPUs: ``os.sched_getaffinity`` (not ``os.cpu_count``), capped by the cgroup CPU quota
  (``cpu.max`` of cgroup v2, ``cpu.cfs_quota_us`` of v1), divided among ``LOCAL_WORLD_SIZE``
  processes;
* decoder threads: 1 below 8 CPUs, else one per 8 CPUs up to 4;
* torch intra-op threads: ``--threads`` when given, else ``OMP_NUM_THREADS`` when set, else on a
  CPU device half of what the decoder leaves (the encoder and the LM may run at the same time),
  all usable CPUs when nothing decodes beside the model, and on a GPU at most 4 (the CPU only
  prepares inputs there);
* interop threads: 1 (eager inference and training do not use the inter-op pool).

The rule never plans more busy threads than usable CPUs (``2 * torch + decoder <= cpus`` when
decoding, ``torch <= cpus`` otherwise) unless a single CPU forces it, or ``--threads`` asks.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
GPU_TORCH_THREADS = 4
"""Most torch CPU threads planned for a GPU device."""


@dataclass(frozen=True)
class ThreadSettings:
    """Threads a run uses: torch intra-op and inter-op threads, FFmpeg decoder threads, and the
    usable CPUs they were derived from (``origin``: what set the torch threads)."""

    cpus: int
    torch_threads: int
    interop_threads: int
    decoder_threads: int
    origin: str = "default"

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for a report, e.g. ``torch 1 thread (interop 1), decoder 1, 2 CPUs usable (default)``."""
        plural = "s" if self.torch_threads != 1 else ""
        return (f"torch {self.torch_threads} thread{plural} (interop {self.interop_threads}), "
                f"decoder {self.decoder_threads}, {self.cpus} CPUs usable ({self.origin})")


def affinity_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _own_cgroup_dirs(root: Path) -> list[Path]:
    """This process's cgroup folder and its ancestors up to ``root`` (deepest first)."""
    dirs = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[0] == "0":  # cgroup v2: "0::/path"
            path = root / parts[2].strip().lstrip("/")
            while path != root and root in path.parents:
                dirs.append(path)
                path = path.parent
    return dirs + [root]


def _read_quota(folder: Path) -> float | None:
    """CPUs allowed by the quota in ``folder`` (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``)."""
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for v1 in (folder / "cpu", folder / "cpu,cpuacct", folder):
        try:
            quota = int((v1 / "cpu.cfs_quota_us").read_text())
            period = int((v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota <= 0 or period <= 0 else quota / period
    return None


def cgroup_cpus(root: Path | None = None) -> float | None:
    """The tightest CPU quota of this process's cgroups, in CPUs (None: no quota)."""
    root = CGROUP_ROOT if root is None else root
    quotas = [q for q in (_read_quota(d) for d in _own_cgroup_dirs(root)) if q is not None and q > 0]
    return min(quotas) if quotas else None


def usable_cpus(affinity: int | None = None, quota: float | None = None, processes: int | None = None) -> int:
    """CPUs one process may keep busy: the affinity mask, capped by the cgroup quota (rounded up),
    divided among ``processes`` local processes (``LOCAL_WORLD_SIZE``). Arguments left None are
    read from this machine."""
    affinity = affinity_cpus() if affinity is None else affinity
    if quota is None:
        quota = cgroup_cpus()
    cpus = min(affinity, math.ceil(quota)) if quota else affinity
    if processes is None:
        processes = _positive_env("LOCAL_WORLD_SIZE") or 1
    return max(1, cpus // max(1, processes))


def _positive_env(name: str) -> int | None:
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return None
    return value if value > 0 else None


def _device_type(device) -> str:
    return str(getattr(device, "type", device) or "cpu").split(":")[0]


def plan_threads(threads: int | None = None, *, device="cpu", decoding: bool = True,
                 cpus: int | None = None) -> ThreadSettings:
    """The thread settings for a run on ``device`` (``"cpu"``, ``"cuda:0"``, a torch.device),
    without applying them. ``threads``: the torch threads asked for (``--threads``); ``decoding``:
    whether video is decoded and encoded beside the model (narrate, demo, serve); ``cpus``: the
    usable CPUs (default: :func:`usable_cpus`)."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    cpus = usable_cpus() if cpus is None else max(1, cpus)
    decoder = 1 if cpus < 8 else min(4, cpus // 8)
    kind = _device_type(device)
    if threads is not None:
        torch_threads, origin = threads, "--threads"
    elif _positive_env("OMP_NUM_THREADS") is not None:
        torch_threads, origin = _positive_env("OMP_NUM_THREADS"), "OMP_NUM_THREADS"
    else:
        origin = "default"
        left = cpus - decoder if decoding else cpus
        share = left // 2 if decoding else left  # the encoder's and the LM's threads may run at once
        torch_threads = max(1, share)
        if kind != "cpu":
            torch_threads = min(torch_threads, GPU_TORCH_THREADS)
    return ThreadSettings(cpus=cpus, torch_threads=torch_threads, interop_threads=1,
                          decoder_threads=decoder, origin=origin)


def configure_threads(threads: int | None = None, *, device="cpu", decoding: bool = True,
                      cpus: int | None = None) -> ThreadSettings:
    """Apply :func:`plan_threads` to torch and return what torch now uses. The inter-op pool can
    only be sized once per process, before it is used; later calls leave it as it is."""
    import torch

    global _configured
    plan = plan_threads(threads, device=device, decoding=decoding, cpus=cpus)
    _configured = plan
    if torch.get_num_threads() != plan.torch_threads:
        torch.set_num_threads(plan.torch_threads)
    if torch.get_num_interop_threads() != plan.interop_threads:
        try:
            torch.set_num_interop_threads(plan.interop_threads)
        except RuntimeError:  # already sized, or parallel work has started
            pass
    return current_threads(plan)


_configured: ThreadSettings | None = None
"""The plan :func:`configure_threads` applied last in this process."""


def decoder_threads() -> int:
    """FFmpeg threads per video decoder: the plan applied by :func:`configure_threads`, else the
    default plan's (video sources set it on every decoder they open)."""
    return (_configured or plan_threads(decoding=True)).decoder_threads


def current_threads(plan: ThreadSettings | None = None) -> ThreadSettings:
    """The settings in effect now: torch's thread counts, the decoder threads of ``plan`` (default:
    the planned ones)."""
    import torch

    plan = plan_threads(decoding=True) if plan is None else plan
    return ThreadSettings(cpus=plan.cpus, torch_threads=torch.get_num_threads(),
                          interop_threads=torch.get_num_interop_threads(),
                          decoder_threads=plan.decoder_threads, origin=plan.origin)


__all__ = ["ThreadSettings", "affinity_cpus", "cgroup_cpus", "configure_threads", "current_threads",
           "decoder_threads", "plan_threads", "usable_cpus"]
