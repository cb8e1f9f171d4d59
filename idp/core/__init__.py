"""Domain services: plain functions with explicit arguments; never `request`, `session` or `g`."""
