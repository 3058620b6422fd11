"""mc_pipeline: what OpenClaw agents cost and how healthy their API calls are, as a Dagster code location."""

__version__ = "0.1.0"
