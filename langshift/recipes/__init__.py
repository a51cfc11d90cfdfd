"""Recipes: multi-stage experiments built on the training engine (`train_and_evaluate`)."""
