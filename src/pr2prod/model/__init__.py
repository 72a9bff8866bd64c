"""Splitting, training and evaluating the model described by params.yaml and schema.yaml."""
