"""Running the pipeline: the CLI, settings, the Dagster instance, the no-op fingerprint."""
