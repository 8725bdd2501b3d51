"""Matplotlib figures for the notebooks, the dashboard and the CLI: ``common`` (shared helpers),
``styles`` (one registry of method labels, colours and markers) and one module per paper."""
