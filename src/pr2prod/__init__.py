"""pr2prod: take a machine-learning model from pull request to production."""

__version__ = "0.1.0"
