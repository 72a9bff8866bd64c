"""Releasing the service: the bento, its container image and the smoke test of a running one.

None of this ships: the bento holds only `pr2prod.serving` and what it imports.
"""
