"""Drift monitoring: live statistics of the service compared with the model's reference."""
