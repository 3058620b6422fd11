"""What a call costs and what it was: prices, billing mode, task types, error classes."""
