"""The tables: column spec, pandera contracts, where each table lives, atomic writes."""
