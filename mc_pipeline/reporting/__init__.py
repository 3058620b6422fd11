"""What users read: window marts, usage-data.json, charts, the report CLI, the usage API."""
