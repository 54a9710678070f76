"""Training: typed config (:mod:`.config`), the recipe loop (:mod:`.recipe`), data methods,
checkpoints. ``streamvlm.train.recipe.train(config) -> output_dir``."""
