"""Altair chart builders of the paper pages, one module per paper (the pages keep only what is particular to them)."""
