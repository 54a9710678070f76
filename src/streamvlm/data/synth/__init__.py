"""A synthetic egocentric activity world: a hand doing goal-directed tasks on a table, seen from
above, written as real h264 videos with annotations in the Ego4D (narrations, GoalStep, LTA) and
COIN formats, so every pipeline of the project runs end to end on a CPU.

- :func:`generate_world` writes a world to a folder (``streamvlm synth`` on the command line);
- :func:`plan_video` and :func:`render_video_frames` give one video's ground truth and frames;
- :class:`SynthWorld` loads ``world.json``.

See ``docs/synthetic-world.md``.
"""

from .generate import generate_world, write_video
from .planner import plan_video, split_of, video_uid
from .render import render_video_frames
from .spec import SynthAction, SynthObject, SynthStep, SynthWorld, VideoSpec, WorldOptions

__all__ = ["generate_world", "write_video", "plan_video", "split_of", "video_uid", "render_video_frames",
           "SynthAction", "SynthObject", "SynthStep", "SynthWorld", "VideoSpec", "WorldOptions"]
