"""Reading the raw sources: the readers, the staged records by day, source state and health."""
