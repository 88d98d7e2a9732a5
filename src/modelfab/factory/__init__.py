"""The factory: recipes of many scenarios, run with shared caches, resumable, local or on Ray."""
