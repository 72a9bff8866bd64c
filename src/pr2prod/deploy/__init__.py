"""Canary deployment: one controller, small targets behind a narrow interface."""
