"""Budget and failure-rate rules, budgets with forecasts, delivery exactly once."""
