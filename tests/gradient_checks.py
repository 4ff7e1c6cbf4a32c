"""Comparing two models' gradients after the same step computed two ways (layout, staging, compiling)."""

from __future__ import annotations


def assert_same_gradients(reference, model, tol: float) -> None:
    """Each parameter's gradient within ``tol`` of the reference's, in norm, with a floor of 1e-4 of the
    largest entry for gradients that are rounding noise (a bias before batch norm).

    Not entry by entry: summing in another order moves single entries by far more than the whole tensor
    moves, and train-mode batch norm over a tiny batch amplifies that (to ~1 % between memory layouts here;
    a real mistake, like a wrong layout, is ~100 %).
    """
    grads = [(name, p.grad, q.grad) for (name, p), q in zip(reference.named_parameters(), model.parameters())]
    floor = 1e-4 * max(g.abs().max().item() for _, g, _ in grads if g is not None)
    for name, g, h in grads:
        assert (g is None) == (h is None), name
        if g is not None:
            err = (h - g).norm().item()
            assert err <= tol * (g.norm().item() + floor), f"{name}: {err:.3g} off, norm {g.norm().item():.3g}"
