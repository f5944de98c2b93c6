"""Supervised fine-tuning with the paper's recipe: recipe, training data, trainer, sharding."""
