"""The ``cg`` part, on one small float64 problem (a 1-task batch, a Conv-4 with ``cg_hidden`` channels):

* ``sweep="residual"``: the CG residual against the step for each ridge strength λ in ``cg_lams``
  (λ = 0 with a singular head Hessian is recorded as a CG failure, not raised);
* ``sweep="inner_steps"`` / ``"cg_steps"``: the hypergradient's relative error against the dense
  implicit-function-theorem solution as K grows (N large) and as N grows (K large).

Every record's ``steps`` is the count its sweep varies: the CG step (residual), K or N.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch.nn.utils import parameters_to_vector

from metalab.core import Record, Unit
from metalab.experiments.memory_reduced.config import MemoryReducedConfig
from metalab.experiments.memory_reduced.context import RunContext, make_model, options, sampler, threaded_unit
from metalab.implicit import dense_implicit_hypergradient, implicit_hypergradient, quiet_numerics

#: Newton steps of the dense reference, in inner-step units of work
DENSE_COST = 50


def _flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return parameters_to_vector(grads.values())


def cg_units(config: MemoryReducedConfig, context: RunContext) -> list[Unit]:
    """One unit per λ of the residual sweep, and one for the hypergradient-error sweeps."""
    shots = min(config.shots)

    @functools.cache
    def problem() -> tuple[tuple, dict[str, Any]]:
        """The hypergradient's arguments and the columns every record of the part shares."""
        batch = sampler(config, context.data.train, shots, "cg").sample_batch(1)
        backbone, params, head = make_model(config, config.seed + 1, hidden=config.cg_hidden, dtype=torch.float64)
        arguments = (backbone, params, head, batch.support_x, batch.support_y, batch.query_x, batch.query_y)
        common = {
            "shots": shots,
            "ways": config.ways,
            "support": config.ways * shots,
            "head_params": head["weight"].numel() + head["bias"].numel(),
            "dataset": context.data.name,
        }
        return arguments, common

    def solve(l2: float, inner_steps: int, cg_steps: int, cg_tol: float):
        # the paper's inner loop (K steps of size α, no early stop): the sweeps show its error in K and N
        opts = options(
            config,
            l2=l2,
            inner_steps=inner_steps,
            cg_steps=cg_steps,
            batch_mode="sequential",
            inner_solver="gd",
            inner_tol=0.0,
        )
        with quiet_numerics():
            return implicit_hypergradient(*problem()[0], **opts, cg_tol=cg_tol)

    def residuals(lam: float) -> Iterator[Record]:
        cg = solve(lam, config.inner_steps, config.cg_max_steps, 1e-12).cg
        norms, relative = cg.residual_norms[:, 0], cg.relative_norms[:, 0]
        for step in range(cg.n_iter + 1):
            values = {
                "sweep": "residual",
                "steps": step,
                "lam": lam,
                "cg_step": step,
                "inner_steps": config.inner_steps,
                "cg_steps": config.cg_max_steps,
                "residual": float(norms[step]),
                "relative_residual": float(relative[step]),
                "hypergrad_error": float("nan"),
                "status": cg.status,
                "failed": cg.failed,
                **problem()[1],
            }
            yield Record("cg", "implicit", step, values)

    def errors() -> Iterator[Record]:
        lam = config.error_l2
        dense = _flat(dense_implicit_hypergradient(*problem()[0], l2=lam).hypergrad)
        big_n = max(max(config.cg_grid), config.cg_max_steps)
        big_k = max(config.error_k_grid)
        sweeps = [("inner_steps", K, big_n) for K in config.error_k_grid]
        sweeps += [("cg_steps", big_k, N) for N in config.cg_grid]
        for done, (sweep, K, N) in enumerate(sweeps, 1):
            result = solve(lam, K, N, 1e-14)
            steps = K if sweep == "inner_steps" else N
            values = {
                "sweep": sweep,
                "steps": steps,
                "lam": lam,
                "cg_step": result.cg.n_iter,
                "inner_steps": K,
                "cg_steps": N,
                "residual": float(result.cg.residual_norms[-1, 0]),
                "relative_residual": float(result.cg.relative_residual[0]),
                "hypergrad_error": float((_flat(result.hypergrad) - dense).norm() / dense.norm()),
                "status": result.cg.status,
                "failed": result.cg.failed,
                **problem()[1],
            }
            yield Record("cg", "implicit", steps, values, progress=done / len(sweeps))

    error_weight = (
        DENSE_COST
        + sum(K + max(config.cg_grid) for K in config.error_k_grid)
        + sum(max(config.error_k_grid) + N for N in config.cg_grid)
    )
    return [
        *(threaded_unit(config, functools.partial(residuals, lam), config.inner_steps + config.cg_max_steps)
          for lam in config.cg_lams),
        threaded_unit(config, errors, error_weight),
    ]  # fmt: skip
