"""From staged records to ``llm_calls``: the call table, de-duplication, day builds and per-day aggregates."""
