"""Property tests: conjugate gradient's status and relative residual do not depend on the scale of the system.

A well-conditioned SPD system ``(c_A A) x = c_b b`` (eigenvalues in [1, 10]) is solved with ``c_A`` and
``c_b`` anywhere from 1e-150 to 1e150: the squares of its unscaled norms and inner products would
overflow or underflow there (1e-150 squared is below float64's smallest normal number), which made CG
report "converged" after no step for ``b`` scaled by 1e200 and "nonpositive_curvature" for a system
scaled by 1e±150.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metalab.implicit import conjugate_gradient

D64 = torch.float64
SETTINGS = settings(max_examples=60, deadline=None)
exponents = st.integers(-150, 150)


def well_conditioned(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An SPD matrix with eigenvalues spread over [1, 10] and a right-hand side, both of order 1."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=D64))
    A = Q @ torch.diag(torch.linspace(1.0, 10.0, n, dtype=D64)) @ Q.T
    return (A + A.T) / 2, torch.randn(n, generator=g, dtype=D64)


def solve(A: torch.Tensor, b: torch.Tensor, a_scale: float, b_scale: float, max_iter: int):
    return conjugate_gradient(lambda u: a_scale * (A @ u), b_scale * b, max_iter=max_iter, tol=1e-10, warn=False)


@SETTINGS
@given(
    n=st.integers(2, 10),
    seed=st.integers(0, 2**16),
    a_exponent=exponents,
    b_exponent=exponents,
    max_iter=st.integers(0, 14),
)
def test_status_and_relative_residual_are_the_same_at_every_scale(n, seed, a_exponent, b_exponent, max_iter):
    A, b = well_conditioned(n, seed)
    reference = solve(A, b, 1.0, 1.0, max_iter)
    scaled = solve(A, b, 10.0**a_exponent, 10.0**b_exponent, max_iter)
    assert scaled.status == reference.status and scaled.n_iter == reference.n_iter
    assert reference.status in ("converged", "max_iter")  # an SPD system never fails
    assert torch.isfinite(scaled.relative_norms).all()
    torch.testing.assert_close(scaled.relative_norms, reference.relative_norms, rtol=1e-6, atol=1e-13)
    # the solution is the reference's, in the scaled system's units: x = (c_b / c_A) x_ref
    ratio = 10.0 ** (b_exponent - a_exponent)
    torch.testing.assert_close(scaled.solution / ratio, reference.solution, rtol=1e-6, atol=1e-12)


@SETTINGS
@given(n=st.integers(2, 10), seed=st.integers(0, 2**16), exponent=exponents)
def test_a_system_scaled_as_a_whole_converges_with_a_small_relative_residual(n, seed, exponent):
    """``(c A) x = c b`` has the solution of ``A x = b`` at every scale c, reached with ||r|| <= tol ||b||."""
    A, b = well_conditioned(n, seed)
    scale = 10.0**exponent
    result = solve(A, b, scale, scale, 3 * n)
    assert result.status == "converged" and result.n_iter >= 1
    assert float(result.relative_residual) <= 1e-10
    torch.testing.assert_close(result.solution, torch.linalg.solve(A, b), rtol=1e-8, atol=1e-10)


def test_each_system_of_a_batch_is_scaled_on_its_own():
    """The same system at 1e-150, 1 and 1e150 in one batch: three identical statuses and histories."""
    A, b = well_conditioned(6, 3)
    scales = torch.tensor([1e-150, 1.0, 1e150], dtype=D64)
    result = conjugate_gradient(
        lambda u: scales[:, None] * (u @ A.T), scales[:, None] * b, max_iter=20, tol=1e-10, batch_dims=1
    )
    assert result.statuses == ("converged",) * 3
    history = result.relative_norms
    torch.testing.assert_close(history[:, 0], history[:, 1], rtol=1e-6, atol=1e-13)
    torch.testing.assert_close(history[:, 2], history[:, 1], rtol=1e-6, atol=1e-13)
    torch.testing.assert_close(result.residual_norms[0], scales * b.norm(), rtol=1e-12, atol=0)


def test_a_right_hand_side_too_large_to_square_is_solved_not_declared_converged():
    """``||b||²`` of b ~ 1e200 overflows: CG used to stop at once with status converged (0 iterations)."""
    A, b = well_conditioned(5, 0)
    result = solve(A, b, 1.0, 1e200, 50)
    assert result.status == "converged" and result.n_iter >= 1
    assert float(result.relative_residual) <= 1e-10
    torch.testing.assert_close(result.solution / 1e200, torch.linalg.solve(A, b), rtol=1e-8, atol=1e-10)
