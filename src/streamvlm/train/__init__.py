"""Training: typed config, the recipe loop, data methods, checkpoints. ``train(config) -> output_dir``."""

from .config import TrainConfig, load_train_config, shipped_configs
from .recipe import train
from .state import latest_checkpoint

__all__ = ["TrainConfig", "latest_checkpoint", "load_train_config", "shipped_configs", "train"]
