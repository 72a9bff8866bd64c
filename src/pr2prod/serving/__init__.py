"""Serving the trained model with BentoML: request contract, model bundle, service, bento."""
