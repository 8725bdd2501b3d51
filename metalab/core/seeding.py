"""Seeding: the same config and seed give the same records on the same machine."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and return a torch generator seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return generator(seed)


def generator(seed: int, stream: str = "", device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh torch generator on ``device`` for ``(stream, seed)`` (local randomness, no global state).

    Different streams give independent draws for the same seed, so data made with ``seed=0`` and a
    method initialised with ``seed=0`` do not share random numbers (a random initial basis would
    otherwise equal the true one).
    """
    g = torch.Generator(device=device)
    if stream:
        seed = int.from_bytes(hashlib.sha256(f"{stream}:{seed}".encode()).digest()[:8], "little") >> 1
    g.manual_seed(int(seed))
    return g
