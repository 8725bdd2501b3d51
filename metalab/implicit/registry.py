"""Every hypergradient method by name, and ``hypergradient`` to call one by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from metalab.implicit.baselines import (
    anil,
    anil_recompute,
    fomaml,
    imaml,
    itd_bio,
    itd_bio_recompute,
    maml,
)
from metalab.implicit.common import HypergradResult, Options
from metalab.implicit.hypergrad import (
    implicit_hypergradient,
    unfused_implicit_hypergradient,
)

HYPERGRADIENTS: dict[str, Callable[..., HypergradResult]] = {
    "implicit": implicit_hypergradient,
    "implicit_unfused": unfused_implicit_hypergradient,
    "maml": maml,
    "fomaml": fomaml,
    "anil": anil,
    "anil_recompute": anil_recompute,
    "itd_bio": itd_bio,
    "itd_bio_recompute": itd_bio_recompute,
    "imaml": imaml,
}

OPTION_NAMES = tuple(Options.__dataclass_fields__)


def hypergradient(
    method: str, backbone, params, head, support_x, support_y, query_x, query_y, **options: Any
) -> HypergradResult:
    """``HYPERGRADIENTS[method](backbone, params, head, support_x, support_y, query_x, query_y, **options)``.

    Every method accepts the options of :class:`~metalab.implicit.common.Options` (those it does not
    use are ignored); ``warm_start`` is accepted by ``"implicit"`` only.
    """
    if method not in HYPERGRADIENTS:
        raise ValueError(f"method={method!r} is not allowed: one of " + ", ".join(map(repr, HYPERGRADIENTS)))
    allowed = OPTION_NAMES + (("warm_start",) if method == "implicit" else ())
    for name in options:
        if name not in allowed:
            raise ValueError(
                f"{name}={options[name]!r} is not allowed for method {method!r}: options are " + ", ".join(allowed)
            )
    return HYPERGRADIENTS[method](backbone, params, head, support_x, support_y, query_x, query_y, **options)
