"""A synthetic egocentric activity world: a hand doing goal-directed tasks on a table, seen from
above, written as real h264 videos with annotations in the Ego4D (narrations, GoalStep, LTA) and
COIN formats, so every pipeline of the project runs end to end on a CPU.

- :func:`generate_world` writes a world to a folder (``streamvlm synth`` on the command line);
- :func:`plan_video` and :func:`render_video_frames` give one video's ground truth and frames;
- :class:`LiveOptions` makes a share of the videos live-like streams (tasks chained, idle
  stretches of up to minutes; :func:`plan_stream`);
- :class:`SynthWorld` loads ``world.json``.

See ``docs/synthetic-world.md``.
"""

from .generate import generate_world, write_video
from .planner import is_live, plan_stream, plan_video, split_of, video_uid
from .render import render_video_frames
from .spec import LiveOptions, SynthAction, SynthObject, SynthPart, SynthStep, SynthWorld, VideoSpec, WorldOptions

__all__ = ["generate_world", "write_video", "plan_video", "plan_stream", "is_live", "split_of", "video_uid",
           "render_video_frames", "LiveOptions", "SynthAction", "SynthObject", "SynthPart", "SynthStep", "SynthWorld",
           "VideoSpec", "WorldOptions"]
