"""The model service, the only code that ships: request contract, model bundle, guards,
telemetry and the BentoML service itself."""
