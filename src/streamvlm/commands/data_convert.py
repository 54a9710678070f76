"""``streamvlm data convert {narration,livechat,coin,lta} ANNOTATIONS --videos-root DIR --out FILE.jsonl``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "convert"
GROUP = "data"
HELP = "Convert Ego4D / COIN annotations to the conversation JSONL format (see docs/data-format.md)."
KINDS = ("narration", "livechat", "coin", "lta")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..data.convert.benchmarks import COIN_BENCHMARKS
    from ..data.generate.options import add_backend_arguments

    parser.add_argument("kind", choices=KINDS,
                        help="narration: Ego4D narration.json; livechat: Ego4D goalstep_*.json or COIN.json; "
                             "coin: COIN benchmark samples; lta: Ego4D fho_lta_*.json samples")
    parser.add_argument("annotations", metavar="ANNOTATIONS", help="annotation file in the dataset's own format")
    parser.add_argument("--videos-root", required=True, help="data root holding the videos; conversations whose video is missing are skipped")
    parser.add_argument("--out", required=True, help="output conversation JSONL file")
    parser.add_argument("--fps", type=float, default=2.0, help="frame rate of the conversations [2]")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice [0]")
    parser.add_argument("--video-pattern", default="{video_uid}.mp4",
                        help="video path relative to the root, from the video uid [{video_uid}.mp4]")
    parser.add_argument("--system-prompt", help="system prompt of every conversation (default: the upstream one)")
    g = parser.add_argument_group("narration")
    g.add_argument("--refined", help="refined narrations {annotation_uid: 'You ...'} (from `streamvlm data refine`)")
    g.add_argument("--instruction", help="user instruction of every dialogue (default: one of the library, seeded)")
    g.add_argument("--window", type=float, default=300.0, help="seconds of video per dialogue [300]")
    g = parser.add_argument_group("livechat")
    g.add_argument("--max-questions", type=int, default=3, help="at most this many user questions per video [3]")
    g.add_argument("--wrong-reply-prob", type=float, default=0.0,
                   help="share of dialogues given a wrong reply to correct or ignore (robustness augmentation) [0]")
    g = parser.add_argument_group("coin")
    g.add_argument("--benchmarks", default=",".join(COIN_BENCHMARKS), help=f"comma-separated subset of {','.join(COIN_BENCHMARKS)}")
    g.add_argument("--subset", choices=("training", "testing"), help="only videos of this COIN subset")
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..config import UPSTREAM_SYSTEM_PROMPT
    from ..data.augment import AugmentOptions, insert_wrong_reply
    from ..data.jsonl import check_video_path, write_jsonl
    from ..errors import UserError

    if args.fps <= 0:
        raise UserError(f"--fps must be > 0, got {args.fps}")
    if not 0.0 <= args.wrong_reply_prob <= 1.0:
        raise UserError(f"--wrong-reply-prob must be in [0, 1], got {args.wrong_reply_prob}")
    root = Path(args.videos_root)
    if not root.is_dir():
        raise UserError(f"--videos-root: no such folder: {root}")
    system = args.system_prompt if args.system_prompt is not None else UPSTREAM_SYSTEM_PROMPT
    records = list(tqdm(_convert(args, system), desc=f"convert {args.kind}", unit="conv"))
    augment = AugmentOptions(args.wrong_reply_prob, seed=args.seed)
    kept, missing = [], set()
    for record in tqdm(records, desc="check videos", unit="conv"):
        try:
            path = check_video_path(record.video, root)
        except ValueError as exc:
            raise UserError(f"--video-pattern gives a bad path: {exc}") from None
        if not path.is_file():
            missing.add(record.video)
            continue
        kept.append(insert_wrong_reply(record, augment))
    count = write_jsonl(kept, args.out)
    note = f" ({len(records) - len(kept)} skipped: {len(missing)} videos missing under {root})" if missing else ""
    print(f"wrote {count} conversations to {args.out}{note}")
    return 0


def _convert(args: argparse.Namespace, system: str):
    from ..data.convert import benchmarks as bm
    from ..data.convert.livechat import LiveChatOptions, coin_tasks, convert_livechat, goalstep_tasks
    from ..data.convert.narration import NarrationOptions, convert_narration, load_refined
    from ..data.formats import read_coin, read_goalstep, read_lta, read_narration
    from ..data.formats.fields import load_json
    from ..errors import UserError

    if args.kind == "narration":
        refined = load_refined(args.refined) if args.refined else None
        options = NarrationOptions(fps=args.fps, window=args.window, system_prompt=system, instruction=args.instruction,
                                   seed=args.seed, video_pattern=args.video_pattern)
        return convert_narration(read_narration(args.annotations), options, refined)
    if args.kind == "livechat":
        from ..data.generate.options import backend_from_args
        from ..data.rule_responder import RuleResponder

        if args.max_questions < 1:
            raise UserError(f"--max-questions must be >= 1, got {args.max_questions}")
        data = load_json(args.annotations)
        if isinstance(data, dict) and "database" in data:
            tasks = coin_tasks(read_coin(args.annotations), args.video_pattern)
        else:
            tasks = goalstep_tasks(read_goalstep(args.annotations), args.video_pattern)
        backend = backend_from_args(args)
        if backend is None:
            responder = RuleResponder()
        else:
            from ..data.generate.responder import LLMResponder

            responder = LLMResponder(backend)
        options = LiveChatOptions(fps=args.fps, seed=args.seed, system_prompt=system, max_questions=args.max_questions)
        return convert_livechat(tasks, responder, options, progress=True)
    options = bm.BenchmarkOptions(fps=args.fps, system_prompt=system, video_pattern=args.video_pattern)
    if args.kind == "coin":
        chosen = [b for b in args.benchmarks.split(",") if b]
        unknown = sorted(set(chosen) - set(bm.COIN_BENCHMARKS))
        if unknown:
            raise UserError(f"--benchmarks: unknown {unknown[0]!r} (choose from {', '.join(bm.COIN_BENCHMARKS)})")
        videos = read_coin(args.annotations)
        labels = bm.coin_label_spaces(videos)
        labels_file = Path(args.out).with_suffix(".labels.json")
        labels_file.parent.mkdir(parents=True, exist_ok=True)
        labels_file.write_text(json.dumps(labels, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        if args.subset:
            videos = [v for v in videos if v.subset == args.subset]
        return bm.coin_benchmarks(videos, labels, chosen, options)
    return bm.lta_samples(read_lta(args.annotations), options)
