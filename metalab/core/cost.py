"""What a run will cost, known before it starts, and the budget a shared server allows.

Every experiment estimates its configuration's :class:`Cost` (peak memory above the process's own, and
seconds on a 2-core CPU) from the sizes in the config, with models calibrated against measured runs
(the tests hold each model within a factor of 2 of a measured peak).  The dashboard refuses a
configuration above its :class:`Budget` and says what it would cost and which setting drives it; the
CLI refuses one that cannot fit in the memory available.
"""

from __future__ import annotations

import dataclasses
import os

from metalab.core.memory import proc_kilobytes

MB = 2**20
GB = 2**30


def describe_bytes(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= 0.95 * GB else f"{max(n / MB, 1):.0f} MB"


def describe_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"


@dataclasses.dataclass(frozen=True)
class Cost:
    """Peak memory (bytes above the process's own) and wall-clock seconds of a run, and the settings
    that drive them (``driver``: the controls to lower first)."""

    bytes: float
    seconds: float
    driver: str = ""

    def then(self, other: Cost) -> Cost:
        """The cost of running ``self`` and then ``other``: the larger peak, the sum of the times."""
        driver = self.driver if self.bytes >= other.bytes else other.driver
        return Cost(max(self.bytes, other.bytes), self.seconds + other.seconds, driver)

    def describe(self) -> str:
        return f"about {describe_bytes(self.bytes)} and {describe_seconds(self.seconds)}"


def sequence(costs: list[Cost]) -> Cost:
    """The cost of running ``costs`` one after another (zero for none)."""
    total = Cost(0.0, 0.0)
    for cost in costs:
        total = total.then(cost)
    return total


def available_bytes() -> float:
    """The memory the operating system could give this process now (Linux ``MemAvailable``; elsewhere
    the physical memory)."""
    available = proc_kilobytes("/proc/meminfo", "MemAvailable")
    if available is not None:
        return float(available)
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_allocation(what: str, n_bytes: float, advice: str = "lower its sizes") -> None:
    """Raise MemoryError, naming ``what``, the sizes and ``advice``, before allocating ``n_bytes`` that the
    machine does not have available (instead of the allocator's traceback or the kernel's OOM killer)."""
    available = available_bytes()
    if n_bytes > available:
        raise MemoryError(
            f"{what} would take {describe_bytes(n_bytes)} of memory and {describe_bytes(available)} are "
            f"available: {advice}"
        )


@dataclasses.dataclass(frozen=True)
class Budget:
    """What one run may cost on a shared server: set by the server's owner through ``METALAB_BUDGET_MB``
    and ``METALAB_BUDGET_SECONDS`` (default 2 GB and 60 s), never by a URL."""

    bytes: float = 2 * GB
    seconds: float = 60.0

    @classmethod
    def from_environment(cls) -> Budget:
        default = cls()
        try:
            megabytes = float(os.environ.get("METALAB_BUDGET_MB", default.bytes / MB))
            seconds = float(os.environ.get("METALAB_BUDGET_SECONDS", default.seconds))
        except ValueError:
            raise ValueError("METALAB_BUDGET_MB and METALAB_BUDGET_SECONDS must be numbers") from None
        if not (megabytes > 0 and seconds > 0):
            raise ValueError("METALAB_BUDGET_MB and METALAB_BUDGET_SECONDS must be positive")
        return cls(megabytes * MB, seconds)

    def refusal(self, cost: Cost) -> str | None:
        """Why ``cost`` does not fit this budget, in words (None when it fits)."""
        over = []
        if cost.bytes > self.bytes:
            over.append(f"{describe_bytes(cost.bytes)} of memory (allowed: {describe_bytes(self.bytes)})")
        if cost.seconds > self.seconds:
            over.append(f"{describe_seconds(cost.seconds)} of computing (allowed: {describe_seconds(self.seconds)})")
        if not over:
            return None
        lower = f" Lower {cost.driver} first." if cost.driver else ""
        return "This configuration would need " + " and ".join(over) + "." + lower
