"""Field benchmarks: OVO-Bench, StreamingBench and ProactiveVideoQA, run through the streaming engine.

* :mod:`.ovobench`, :mod:`.streamingbench`, :mod:`.proactivevideoqa`: each benchmark's published
  annotation files (loaded and checked: a bad entry is one line naming the file, the entry and the
  field), its harness prompts, its probes, its official scoring rules as pure functions (quirks
  included) and its per-task table;
* :mod:`.judges`: who decides whether a free reply says what was expected (PAUC scores, spontaneous
  replies in online mode): a rule judge for the synthetic world, a text judge, or a chat model
  (transformers or an OpenAI-compatible endpoint);
* :mod:`.synthetic`: editions of the three benchmarks made from a synthetic world's ground truth;
* :mod:`.stream`: the one module that drives the engine (sessions, frames, the batched step,
  likelihood scoring);
* :mod:`.runner`: offline and online runs, the model and its blind baseline, JSON lines of every
  probe as it finishes (resumable);
* :mod:`.report`: tables and the per-task figure.

See ``docs/benchmarks.md``.
"""
