"""Seeding: the same config and seed give the same records on the same machine."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and return a torch generator seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return generator(seed)


def generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh torch generator on ``device`` seeded with ``seed`` (local randomness, no global state)."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g
