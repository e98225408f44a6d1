"""One module per CLI command; each exposes a plain `run(...)` callable from Python and tests."""
