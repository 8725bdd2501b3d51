"""What a Meta-SP experiment will cost before it runs, from the sizes in its config.

Every method works on ``X`` of shape (T, m, d) in float64, ``x = 8 T m d`` bytes; generating the data
peaks at about 1.3 x.  Peaks measured above that (peak RSS from VmHWM in a fresh process, one thread,
(T, m, d) from (2000, 10, 50) to (1000, 50, 200)): Meta-SP, the nuclear norm and Burer-Monteiro hold
about 1.3 x; the method of moments and AltMinGD (which starts from it) 3 x; ANIL 4 x plus autograd's
workspace; single-task OLS (a pseudo-inverse per task) about 5 x; exact AltMin the T per-task Gram
matrices (8 T d^2 bytes) and its (d s)^2 system built through a T d^2 s intermediate.  Times are per
iteration: about 1.8e-8 s per multiply-add over X plus a fixed 1-30 ms, per method; the iterative
methods are charged their whole iteration budget (they often stop earlier at ``tol``).
"""

from __future__ import annotations

from metalab.core.cost import MB, Cost, sequence
from metalab.experiments.meta_sp.config import MetaSPConfig

#: method -> (bytes held beyond the data per byte of X, seconds per iteration per multiply-add over X,
#: fixed seconds per iteration); methods with no iterations take one pass over the second moments,
#: ``SECONDS_PER_MOMENT`` per multiply-add of T m d^2 (scaled by the third number)
_METHODS = {
    "meta_sp": (1.3, 1.8e-8, 1e-3),
    "nuclear_norm": (1.3, 1.8e-8, 1e-3),
    "burer_monteiro": (1.3, 1.8e-8, 3e-2),
    "altmin_gd": (3.0, 1.8e-8, 1.5e-3),
    "altmin": (3.0, 3.6e-8, 3e-3),
    "anil": (4.0, 3.6e-8, 3e-3),
    "anil_fo": (4.0, 2.7e-8, 3e-3),
    "mom": (3.0, 0.0, 1.0),
    "single_task": (5.0, 0.0, 5.0),
    "oracle": (0.5, 0.0, 0.0),
}
SECONDS_PER_MOMENT = 4e-10
AUTOGRAD_WORKSPACE = 64 * MB


def fit_cost(method: str, T: int, m: int, d: int, s: int, max_iter: int) -> Cost:
    """One fit of ``method`` on one (T, m, d) instance of rank ``s`` (the data generation included)."""
    x = 8.0 * T * m * d
    held, per_multiply_add, fixed = _METHODS[method]
    extra = held * x
    if method == "altmin":
        extra += 8.0 * T * d * d * (1 + s)
    if method.startswith("anil"):
        extra += AUTOGRAD_WORKSPACE
    if per_multiply_add:
        seconds = max_iter * (fixed + per_multiply_add * T * m * d)
    else:  # one pass over the per-task second moments
        seconds = fixed * SECONDS_PER_MOMENT * T * m * d * d
    return Cost(1.3 * x + extra, seconds)


def estimate(config: MetaSPConfig) -> Cost:
    """The peak memory and time of ``run(config)``: its instances run one after another."""
    c = config
    fits: list[Cost] = []

    def instances(count: int, methods, **size) -> None:
        shape = {"T": c.n_tasks, "m": c.n_samples, "d": c.d, **size}
        fits.extend(
            fit_cost(method, s=c.rank, max_iter=c.iterations(method), **shape)
            for method in methods
            for _ in range(count)
        )

    if "convergence" in c.parts:
        instances(1, c.methods)
    if "samples" in c.parts:
        for m in c.samples_grid:
            instances(c.repeats, c.methods, m=m)
    if "rank" in c.parts:
        instances(3 * c.repeats, ("meta_sp",))
    if "noise_floor" in c.parts:
        for d in c.dim_grid:
            instances(c.repeats, ("meta_sp",), d=d)
        for T in c.tasks_grid:
            instances(c.repeats, ("meta_sp",), T=T)
        for m in c.floor_samples_grid:
            instances(c.repeats, ("meta_sp",), m=m)
        instances(c.repeats * len(c.noise_grid), ("meta_sp",))
    if "air_quality" in c.parts:  # at most 24 hours a station-day, 21 features
        instances(1, [m for m in c.methods if m != "oracle"], T=c.aq_max_tasks, m=24, d=21)
    if "time_to_target" in c.parts:
        instances(c.repeats, c.methods)
    total = sequence(fits)
    return Cost(
        total.bytes, total.seconds, "tasks T, samples per task m (and the samples grid), dimension d, iterations"
    )
