"""The one model loader: local folders of every kind, Hugging Face Hub ids (from the Hub cache when
offline, a clear error when absent), and one device / dtype resolution."""

from __future__ import annotations

import shutil

import pytest
import torch

from streamvlm.device import resolve_device, resolve_dtype
from streamvlm.errors import UserError
from streamvlm.model.checkpoint import save_pretrained
from streamvlm.model.frame_encoder import save_frame_encoder
from streamvlm.model.loading import ModelSource, load_frame_encoder_of, load_model

from ..helpers import tiny_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loading") / "ckpt"
    save_pretrained(tiny_model(seed=3), folder)
    return folder


def hub_cache(root, repo_id: str, source) -> None:
    """Lay ``source`` out as the cached snapshot of ``repo_id`` (what a download leaves behind)."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    shutil.copytree(source, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def test_a_hub_id_is_read_from_the_hub_cache_offline(checkpoint, tmp_path, monkeypatch):
    hub_cache(tmp_path, "someone/tiny-streamvlm", checkpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    model = load_model(ModelSource(model="someone/tiny-streamvlm"))
    reference = load_model(ModelSource(model=str(checkpoint)))
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(UserError, match=r"^--model someone/absent: not a local folder, and the Hugging Face Hub "
                                        r"cannot be reached .offline.. with no cached copy"):
        load_model(ModelSource(model="someone/absent"))


def test_local_folders_of_each_kind(checkpoint, tmp_path):
    assert load_model(ModelSource(model=str(checkpoint))).config.tokens_per_frame == 10
    tower = tmp_path / "tower"
    save_frame_encoder(tiny_model().frame_encoder, tower)
    assert load_frame_encoder_of(ModelSource(model=str(tower))).tokens_per_frame == 10
    assert load_frame_encoder_of(ModelSource(model=str(checkpoint))).tokens_per_frame == 10
    with pytest.raises(UserError, match="a frame-encoder folder .* holds no language model"):
        load_model(ModelSource(model=str(tower)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a streamvlm checkpoint"):
        load_model(ModelSource(model=str(tmp_path / "empty")))
    with pytest.raises(UserError, match="no such folder .and not a Hugging Face Hub id"):
        load_model(ModelSource(model=str(tmp_path / "nope" / "deeper")))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="needs its base model: pass --llm"):
        load_model(ModelSource(model=str(adapter)))


def test_one_device_and_dtype_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(UserError, match="float16: not supported on a CPU"):
        resolve_dtype("float16", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--device cuda:1: no CUDA device"):
            resolve_device("cuda:1")


def test_every_loader_sets_torch_threads(checkpoint, tmp_path):
    """--threads (ModelSource.threads) is applied before the model is built, by every loading path;
    without it the default of streamvlm.threads (never more than the usable CPUs) is applied."""
    from streamvlm.threads import usable_cpus

    before = torch.get_num_threads()
    tower = tmp_path / "tower"
    save_frame_encoder(tiny_model().frame_encoder, tower)
    try:
        for threads in (1, 2):
            load_model(ModelSource(model=str(checkpoint), device="cpu", threads=threads))
            assert torch.get_num_threads() == threads
            load_frame_encoder_of(ModelSource(model=str(tower), device="cpu", threads=3 - threads))
            assert torch.get_num_threads() == 3 - threads
        load_model(ModelSource(model=str(checkpoint), device="cpu"))
        assert 1 <= torch.get_num_threads() <= usable_cpus()
    finally:
        torch.set_num_threads(before)
