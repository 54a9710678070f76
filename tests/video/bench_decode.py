"""Decode-speed figure: python tests/video/bench_decode.py [video] (default: the shared
flashvstream_example.mp4), sampled at 2 fps with max_side=384."""

import sys
import time
from pathlib import Path

from streamvlm.video import open_source

DEFAULT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "videos" / "flashvstream_example.mp4"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    start = time.perf_counter()
    with open_source(path, fps=2, max_side=384) as src:
        sampled = sum(1 for _ in src)
    seconds = time.perf_counter() - start
    print(f"{path.name}: {src.stats.decoded} frames decoded, {sampled} sampled in {seconds:.2f} s "
          f"-> {src.stats.decoded / seconds:.0f} decoded frames/s, {sampled / seconds:.0f} sampled "
          f"frames/s, {src.duration / seconds:.0f}x real time")


if __name__ == "__main__":
    main()
