"""``streamvlm data convert {narration,livechat,coin,lta} ANNOTATIONS --videos-root DIR --out FILE.jsonl``."""

from __future__ import annotations

from ...data.convert.files import ConvertOptions as Options


def run(options: Options) -> int:
    from ...data.convert.files import convert_file

    report = convert_file(options)
    note = ""
    if report.missing_videos:
        note = f" ({report.skipped} skipped: {len(report.missing_videos)} videos missing under {options.videos_root})"
    print(f"wrote {report.written} conversations to {options.out}{note}")
    return 0
