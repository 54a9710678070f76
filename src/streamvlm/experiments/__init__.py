"""Experiments: the paper's ablation tables reproduced at CPU scale (``streamvlm tables``), and the
pipeline steps they share with ``streamvlm build-default``."""
