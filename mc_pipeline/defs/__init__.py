"""The Dagster layer: assets, checks, resources, schedules and sensors (thin, declarative)."""
