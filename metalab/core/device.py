"""Device selection: ``"auto"`` means CUDA when available, else CPU."""

from __future__ import annotations

import contextlib

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Map ``"auto"``/``"cpu"``/``"cuda"``/``"cuda:N"`` to a torch device, checking CUDA is present.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; case and
        surrounding spaces are ignored.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        When the name is unknown, or CUDA is requested but not available.

    Examples
    --------
    >>> resolve_device(" CPU ")
    device(type='cpu')
    >>> resolve_device("auto").type in ("cpu", "cuda")
    True
    >>> resolve_device("tpu")
    Traceback (most recent call last):
        ...
    ValueError: device='tpu' is not allowed: one of 'auto', 'cpu', 'cuda', 'cuda:N'
    """
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but CUDA is not available; use 'auto' or 'cpu'")
        return torch.device(name)
    raise ValueError(f"device={device!r} is not allowed: one of 'auto', 'cpu', 'cuda', 'cuda:N'")


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (``None`` or 0: unchanged), restoring the previous count.

    Parameters
    ----------
    n : int or None
        The thread count inside the block.

    Examples
    --------
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)
