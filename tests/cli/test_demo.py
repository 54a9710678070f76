"""``streamvlm demo`` end to end on a tiny checkpoint: live lines, ground truth, the scores line."""

from __future__ import annotations

import re

METRICS_LINE = re.compile(r"^teacher-forced \(gold history in the cache\): TimeDiff (\d+\.\d+s|-) \| "
                          r"Fluency (\d+%|-) \| LM-correctness (\d+%|-)$")
LIVE_LINE = re.compile(r"^live \(its own replies above\): answered within 2 s (\d+)/(\d+) \| "
                       r"right text (\d+)/(\d+), verb (\d+)/\d+, object (\d+)/\d+ \| "
                       r"well-formed (\d+)/(\d+) \| false alarms (\d+)/(\d+) \| \d+\.\d frames/s$")


def test_demo_on_a_synthetic_clip(cli, tiny_checkpoint):
    result = cli("demo", "--model", tiny_checkpoint, "--duration", "12", "--seed", "7", "--max-new-tokens", "1",
                 "--no-progress")
    assert result.code == 0, result.err
    lines = result.lines
    assert lines[0].startswith("synthetic clip synth_s7_00000: 12 s, goal: ") and "--seed 7" in lines[0]
    match = METRICS_LINE.match(lines[-2])
    assert match, lines[-2]
    assert match[1] != "-" and match[2] != "-" and match[3] != "-"  # the clip has narrations to score
    body = lines[1:-2]
    live = LIVE_LINE.match(lines[-1])
    assert live, lines[-1]
    asked = [i for i, line in enumerate(body) if " User: " in line]  # a question, its answer, the true answer
    answer = {*asked, *(i + 1 for i in asked),
              *(i + 2 for i in asked if i + 2 < len(body) and " truth: " in body[i + 2])}
    truths = [line for i, line in enumerate(body) if " truth: " in line and i not in answer]
    replies = [line for i, line in enumerate(body) if " Assistant: " in line and i not in answer]
    assert int(live[2]) == len(truths) and int(live[8]) == int(live[10]) == len(replies)  # what was printed
    assert int(live[1]) == int(live[4]) <= len(truths)
    times = [float(re.match(r"^\((\d+\.\d)s\) ", line)[1]) for line in body]
    assert times == sorted(times)  # truth and model lines interleaved in time order
    assert any(" truth: You " in line for line in body)
    assert "(0.0s) User: Please concisely narrate the video in real time." in body
    for when, question in (("4.0", "What have I done so far to"), ("6.0", "What am I doing right now?"),
                           ("8.0", "What should I do next to")):
        asked = [i for i, line in enumerate(body) if line.startswith(f"({when}s) User: {question}")]
        assert len(asked) == 1
        assert body[asked[0] + 1].startswith(f"({when}s) Assistant:")
        assert body[asked[0] + 2].startswith(f"({when}s) truth: ")


def test_demo_with_a_video(cli, tiny_checkpoint, short_clip):
    result = cli("demo", "--model", tiny_checkpoint, "--video", short_clip, "--max-new-tokens", "1", "--no-progress")
    assert result.code == 0, result.err
    assert re.match(r"^12 frames in [\d.]+s \([\d.]+ frames/s\); dropped 0, damaged frames skipped 0$",
                    result.lines[-1])
    assert not any("truth:" in line for line in result.lines)
    assert result.lines[0] == "(0.0s) User: Please concisely narrate the video in real time."  # narration asked


def test_demo_without_the_default_model_says_how_to_get_it(cli, monkeypatch, tmp_path):
    from streamvlm.model import default as default_model

    monkeypatch.setattr(default_model, "DEFAULT_MODEL_DIR", tmp_path / "absent")
    result = cli("demo", "--duration", "4")
    assert result.code == 2
    assert result.err.startswith("streamvlm: error: the embedded default model is missing")
    assert "streamvlm build-default --install" in result.err


CLIPS_LINE = re.compile(r"^(\d+) clips \(seeds (\d+)-(\d+)\), (\d+) narration replies and (\d+) answers: "
                        r"template text in (\d+) and (\d+), a 3-word run said 3 times in (\d+) and (\d+)$")


def test_demo_clips_adds_up_the_clips_played_one_by_one(cli, tiny_checkpoint):
    """``--clips 2 --seed 5``: seeds 5 and 6 played quietly; the counts of narration replies and
    answers, of those holding template text or a loop, and the live counts are those of ``--seed
    5`` and ``--seed 6`` run one by one."""
    from streamvlm.evaluation.live_eval import has_loop, has_template_text

    common = ("--model", tiny_checkpoint, "--duration", "12", "--max-new-tokens", "4", "--no-progress")
    counts = {"narration": [0, 0, 0], "answer": [0, 0, 0]}
    live = [0] * 10
    for seed in ("5", "6"):
        single = cli("demo", *common, "--seed", seed)
        assert single.code == 0, single.err
        body = single.lines[1:-2]
        for i, line in enumerate(body):
            if " Assistant: " in line:
                kind = "answer" if i > 0 and " User: " in body[i - 1] else "narration"
                text = line.split(" Assistant: ", 1)[1]
                counts[kind] = [n + x for n, x in zip(counts[kind], (1, has_template_text(text), has_loop(text)))]
        live = [a + int(b) for a, b in zip(live, LIVE_LINE.match(single.lines[-1]).groups())]
    result = cli("demo", *common, "--seed", "5", "--clips", "2")
    assert result.code == 0, result.err
    summary = CLIPS_LINE.match(result.lines[0])
    assert summary, result.lines[0]
    narration, answer = counts["narration"], counts["answer"]
    assert [int(x) for x in summary.groups()] == [2, 5, 6, narration[0], answer[0], narration[1], answer[1],
                                                  narration[2], answer[2]]
    assert answer[0] == 2 * 4  # the instruction and the three questions of each clip, answered
    flagged = len([line for line in result.lines[1:-1] if line.startswith("  seed ")])
    assert len(result.lines) == 2 + flagged and flagged <= 20  # the flagged replies, listed
    assert flagged >= min(20, max(narration[1], narration[2], answer[1], answer[2]))
    totals = re.match(r"^live, all clips: answered within 2 s (\d+)/(\d+) \| right text (\d+)/(\d+), verb (\d+)/\d+, "
                      r"object (\d+)/\d+ \| well-formed (\d+)/(\d+) \| false alarms (\d+)/(\d+)$", result.lines[-1])
    assert totals and [int(x) for x in totals.groups()] == live


def test_demo_clips_refuses_a_video(cli, short_clip):
    result = cli("demo", "--clips", "2", "--video", short_clip)
    assert result.code == 2
    assert result.err.strip() == "streamvlm: error: --clips plays synthetic clips: it does not take --video"
