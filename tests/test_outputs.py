"""Output files: refused when they are devices, FIFOs, folders or inputs; written beside the
target and renamed into place only by a run that finished, so nothing is ever half-written."""

from __future__ import annotations

import os
import threading

import pytest

from streamvlm.outputs import AtomicFile, OutputError, check_output, write_text_atomic


def test_refuses_devices_fifos_folders_and_inputs(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, fragment in (("/dev/full", "is a device, FIFO or socket"), (fifo, "is a device, FIFO or socket"),
                           (tmp_path, "is a folder")):
        with pytest.raises(OutputError, match=fragment):
            check_output(path, name="--output")
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"video")
    link = tmp_path / "link.mp4"
    link.symlink_to(source)
    for same in (source, link, tmp_path / "." / "clip.mp4"):
        with pytest.raises(OutputError, match="is also an input of this run"):
            check_output(same, name="--output", inputs=[source])
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is not a folder"):
        check_output(tmp_path / "file" / "out.jsonl")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        check_output(tmp_path / "file", folder=True)
    assert check_output(tmp_path / "new" / "deeper" / "out.jsonl") == tmp_path / "new" / "deeper" / "out.jsonl"


def test_a_failed_run_leaves_the_existing_file_as_it_was(tmp_path):
    target = tmp_path / "events.jsonl"
    target.write_text("precious\n")

    def failed_run():
        with AtomicFile(target) as out:
            out.write("half a run\n")
            raise RuntimeError("the model failed")

    with pytest.raises(RuntimeError, match="the model failed"):
        failed_run()
    assert target.read_text() == "precious\n"
    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]  # no temporary file left


def test_commit_replaces_whole_and_keeps_the_mode(tmp_path):
    target = tmp_path / "events.jsonl"
    target.write_text("old\n")
    target.chmod(0o640)
    with AtomicFile(target) as out:
        out.write("new\n")
        assert target.read_text() == "old\n"  # nothing visible before the commit
        out.commit()
    assert target.read_text() == "new\n" and (target.stat().st_mode & 0o777) == 0o640


def test_two_writers_never_interleave(tmp_path):
    target = tmp_path / "out.jsonl"
    barrier = threading.Barrier(2)

    def writer(tag: str) -> None:
        with AtomicFile(target) as out:
            for i in range(200):
                out.write(f"{tag} {i}\n")
                if i == 100:
                    barrier.wait()
            out.commit()

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = target.read_text().splitlines()
    assert lines in ([f"a {i}" for i in range(200)], [f"b {i}" for i in range(200)])


def test_write_errors_are_one_line(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is missing")
    with pytest.raises(OutputError, match="cannot write"):
        write_text_atomic("/dev/full/x", "data")
