"""``streamvlm tables``: the whole pipeline at seconds scale, the report's wording, resumption."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import pytest

from streamvlm.cli import main
from streamvlm.errors import UserError
from streamvlm.experiments.report import (
    DISCUSSION_END,
    DISCUSSION_START,
    LOSSES,
    METHODS,
    TAUS,
    ordering_sentence,
    tau_sentence,
)
from streamvlm.experiments.tables import RUNS, TablesOptions, run_tables
from streamvlm.settings import to_dict

TINY = replace(TablesOptions.make_quick(), videos=2, heldout_videos=1, steps=2, duration=10.0)
METRICS = ("lm_ppl", "time_diff", "fluency", "lm_correctness")


def rows(text: str, section: str) -> list[list[str]]:
    """The data rows of the first table after the heading ``section``."""
    body = text.split(section, 1)[1].split("\n## ", 1)[0]
    lines = [line for line in body.splitlines() if line.startswith("| ")][1:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def finite(cell: str) -> bool:
    try:
        return math.isfinite(float(cell.rstrip("%")))
    except ValueError:
        return False


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tables")
    report = run_tables(out / "work", TINY, out / "results.md")
    return out, report


def test_every_table_row_is_written_with_finite_metrics(tiny_run):
    out, report = tiny_run
    text = report.read_text()
    expected = {"## (a)": ["Interleaved dialogue", "Per-frame dialogue", "Streaming dialogue"],
                "## (b)": ["CE", "OHEM", "focal"], "## (c)": ["0.5", "1", "2", "3"],
                "## Threshold": ["0.3", "0.725", "0.95"]}
    for section, labels in expected.items():
        table = rows(text, section)
        assert [r[0] for r in table] == labels, section
        assert all(finite(cell) for r in table for cell in r[1:5]), (section, table)
    for section in ("## (a)", "## (b)", "## (c)"):  # P(silence) at gold-speak / gold-silent frames
        assert all(finite(v) and 0 <= float(v) <= 1 for r in rows(text, section) for v in r[5].split(" / "))
    tokens = {r[0]: float(r[7]) for r in rows(text, "## (a)")}
    assert tokens["Per-frame dialogue"] > tokens["Streaming dialogue"]  # a reply template after every frame
    for heading in ("## (a)", "## (b)", "## (c)"):
        assert "The paper's" in text.split(heading, 1)[1].split("\n## ", 1)[0]
    for result in (out / "work" / "runs").glob("*/result.json"):
        metrics = json.loads(result.read_text())["metrics"]
        assert all(math.isfinite(metrics[m]) for m in METRICS)
    assert len(list((out / "work" / "runs").glob("*/result.json"))) == len(RUNS)


def test_the_report_lists_the_commands(tiny_run):
    out, report = tiny_run
    text = report.read_text()
    work = str(out / "work")
    assert f"streamvlm tables --out {work} --quick" in text
    for needle in ("streamvlm synth --out", "streamvlm data convert narration", "streamvlm data convert livechat",
                   "streamvlm train tiny-synth-per-frame", "streamvlm train tiny-synth-ohem", "loss.tau=2",
                   "optim.max_steps=2", "streamvlm pretrain-tower", "streamvlm encode", "model.train_vision=false",
                   "--threshold 0.725", "for T in 0.3 0.725 0.95; do streamvlm eval"):
        assert needle in text, needle


def test_a_second_call_reuses_the_runs_and_keeps_the_discussion(tiny_run, monkeypatch):
    from streamvlm.experiments import steps, tables

    out, report = tiny_run
    text = re.sub(re.escape(DISCUSSION_START) + ".*" + re.escape(DISCUSSION_END),
                  DISCUSSION_START + "\nWritten by hand.\n" + DISCUSSION_END, report.read_text(), flags=re.S)
    report.write_text(text)

    def redone(*args, **kwargs):
        raise AssertionError("finished work was done again")

    for module, name in ((steps, "train_run"), (steps, "pretrain_tower"), (tables, "evaluate"),
                         (steps, "generate_world")):
        monkeypatch.setattr(module, name, redone, raising=False)
    monkeypatch.setattr("streamvlm.train.tower_pretrain.pretrain_tower", redone)
    monkeypatch.setattr("streamvlm.data.synth.generate_world", redone)
    assert main(["tables", "--out", str(out / "work"), "--quick", "--videos", "2", "--heldout-videos", "1",
                 "--steps", "2", "--duration", "10", "--results", str(report)]) == 0
    again = report.read_text()
    assert re.search(re.escape(DISCUSSION_START) + r"\nWritten by hand.\n" + re.escape(DISCUSSION_END), again)
    assert rows(again, "## (a)") == rows(text, "## (a)")


def result(lm_ppl: float, time_diff: float, fluency: float) -> dict:
    return {"metrics": {"lm_ppl": lm_ppl, "time_diff": time_diff, "fluency": fluency, "lm_correctness": 0.5}}


def test_ordering_sentence_compares_with_the_paper():
    paper_like = {"interleaved": result(2.45, 6.47, 0.111), "per_frame": result(3.34, 2.52, 0.377),
                  "streaming": result(2.43, 2.32, 0.426)}
    assert ordering_sentence(paper_like, METHODS).startswith("The paper's ordering holds here")
    swapped = dict(paper_like, streaming=result(2.43, 7.0, 0.05))
    sentence = ordering_sentence(swapped, METHODS)
    assert "holds in part" in sentence and "TimeDiff differs from the paper" in sentence
    reversed_losses = {"streaming": result(3.0, 3.0, 0.1), "ohem": result(2.5, 2.5, 0.2),
                       "focal": result(2.0, 2.0, 0.3)}
    assert ordering_sentence(reversed_losses, LOSSES).startswith("The paper's ordering does not hold here")
    tied = dict(paper_like, per_frame=result(3.34, 2.3204, 0.377), streaming=result(2.43, 2.3196, 0.426))
    assert "TimeDiff differs from the paper (best first: Per-frame dialogue = Streaming dialogue > Interleaved" \
        in ordering_sentence(tied, METHODS)


def test_tau_sentence_checks_similarity_and_the_best_timediff():
    results = {name: result(2.0, 2.0, 0.40) for name in TAUS} | {"tau2": result(2.0, 1.9, 0.41)}
    assert "holds here: best TimeDiff at tau = 2" in tau_sentence(results, TAUS)
    results["tau3"] = result(2.0, 1.0, 0.60)
    assert "does not hold here: best TimeDiff at tau = 3, best Fluency at tau = 3" in tau_sentence(results, TAUS)
    same = {name: result(2.0, 2.0, 0.40) for name in TAUS}
    assert "holds in part here: best TimeDiff at tau = 0.5 and 1 and 2 and 3 (tied)" in tau_sentence(same, TAUS)


def test_a_folder_made_with_other_settings_is_refused(tmp_path):
    (tmp_path / "options.json").write_text(json.dumps({**to_dict(TINY), "steps": 7}))
    with pytest.raises(UserError, match="steps differ"):
        run_tables(tmp_path, TINY, tmp_path / "results.md")


@pytest.mark.slow
def test_full_tables_run(tmp_path):
    """The default sizes (about 45 minutes on 2 CPU cores)."""
    report = run_tables(tmp_path / "work", TablesOptions(), tmp_path / "results.md")
    for section in ("## (a)", "## (b)", "## (c)", "## Threshold"):
        assert all(finite(cell) for r in rows(report.read_text(), section) for cell in r[1:5])
