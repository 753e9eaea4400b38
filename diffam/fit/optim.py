"""Optimisers of DiffAM: VectorAdam for the shape, Adam for the appearance MLP.

VectorAdam (Ling et al. 2022, "VectorAdam for rotation equivariant geometry
optimization") is Adam whose second moment is the squared norm of each
vector (the last axis of a parameter) instead of each coordinate, so the
update of a vector is parallel to its first moment and rotating all
gradients rotates the update exactly.

Spectral coefficients U (k, 3) additionally take a per-frequency step scale
``(Lambda / lambda_0) ** -alpha`` (METHOD.md section 2), set each iteration
with :meth:`VectorAdam.set_frequency_scale` and :func:`frequency_step_scale`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch

DEFAULT_LR = 0.01
DEFAULT_BETAS = (0.9, 0.9)


def frequency_step_scale(
    eigenvalues: torch.Tensor, alpha: float, zero_tolerance: float = 1e-6
) -> torch.Tensor:
    """Per-frequency step scale ``(Lambda / lambda_0) ** (-alpha)``, (k,).

    lambda_0 is the smallest eigenvalue above ``zero_tolerance`` times the
    largest one; eigenvalues at or below lambda_0 (the ~0 constant mode, a
    rigid translation) get scale 1.

    Args:
        eigenvalues: (k,) ascending Laplace–Beltrami eigenvalues (any unit:
            only ratios matter).
        alpha: exponent (1.0 -> 0.4 over the run, see
            the alpha schedule of :class:`~diffam.core.config.ShapeConfig`).
        zero_tolerance: relative threshold below which an eigenvalue is zero.
    """
    lam = torch.as_tensor(eigenvalues)
    if lam.ndim != 1 or lam.numel() == 0:
        raise ValueError(f"eigenvalues must have shape (k,), k >= 1, got {tuple(lam.shape)}")
    lam = lam.to(torch.float64) if not lam.is_floating_point() else lam
    nonzero = lam[lam > zero_tolerance * lam.abs().max()]
    if nonzero.numel() == 0:
        return torch.ones_like(lam)
    lam0 = nonzero.min()
    return (lam.clamp_min(lam0) / lam0) ** (-float(alpha))


class VectorAdam(torch.optim.Optimizer):
    """Adam with the second moment shared across each vector (the last axis).

    For a parameter of shape (..., D) (D = 3 for vertices, spectral
    coefficients or rows of an affine matrix) and gradient g::

        m <- b1 m + (1 - b1) g
        v <- b2 v + (1 - b2) |g|^2          # (..., 1): squared norm of each row
        p <- p - lr * s * m_hat / (sqrt(v_hat) + eps)

    with bias-corrected m_hat, v_hat and an optional row scale s broadcast
    against ``p.shape[:-1]`` (the param-group key ``"frequency_scale"``, e.g.
    (k,) for coefficients of shape (k, 3) or (M, k, 3)).

    Args:
        params: parameters or parameter groups (dicts; a ``"name"`` key lets
            :meth:`set_frequency_scale` find a group).
        lr: step size, in the unit of the parameters.
        betas: decay rates of the first and second moments.
        eps: added to sqrt(v_hat).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = DEFAULT_LR,
        betas: tuple[float, float] = DEFAULT_BETAS,
        eps: float = 1e-8,
    ):
        if not lr >= 0.0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two values in [0, 1), got {betas}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, frequency_scale=None)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim < 1:
                    raise ValueError("params: VectorAdam needs parameters of shape (..., D)")

    def set_frequency_scale(self, scale: torch.Tensor | None, group: str | int = "spectral"):
        """Set the row step scale of one parameter group.

        Args:
            scale: tensor broadcastable to ``p.shape[:-1]`` of the group's
                parameters (e.g. (k,) from :func:`frequency_step_scale`), or
                None for no scaling.
            group: the group's ``"name"`` or its index.
        """
        if isinstance(group, int):
            if not 0 <= group < len(self.param_groups):
                raise ValueError(f"group index {group} out of range")
            target = self.param_groups[group]
        else:
            matches = [g for g in self.param_groups if g.get("name") == group]
            if not matches:
                raise ValueError(f"group: no parameter group named {group!r}")
            target = matches[0]
        if scale is not None:
            scale = torch.as_tensor(scale).detach()
            for p in target["params"]:
                try:
                    torch.broadcast_shapes(scale.shape, p.shape[:-1])
                except RuntimeError as err:
                    raise ValueError(
                        f"scale of shape {tuple(scale.shape)} does not broadcast to the rows "
                        f"{tuple(p.shape[:-1])} of a parameter of shape {tuple(p.shape)}"
                    ) from err
        target["frequency_scale"] = scale

    @torch.no_grad()
    def step(self, closure=None):
        """One optimisation step; returns the closure's loss if one is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            scale = group["frequency_scale"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("VectorAdam does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p[..., :1])
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(b1).add_(grad, alpha=1.0 - b1)
                v.mul_(b2).add_((grad * grad).sum(-1, keepdim=True), alpha=1.0 - b2)
                m_hat = m / (1.0 - b1**t)
                v_hat = v / (1.0 - b2**t)
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if scale is not None:
                    update = update * scale.to(device=p.device, dtype=p.dtype).unsqueeze(-1)
                p.add_(update, alpha=-group["lr"])
        return loss


def appearance_optimizer(
    params: Iterable, lr: float = DEFAULT_LR, betas: tuple[float, float] = DEFAULT_BETAS
) -> torch.optim.Adam:
    """Plain Adam for the appearance MLP (METHOD.md: lr 0.01, betas (0.9, 0.9))."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas))


@contextlib.contextmanager
def repeatable_cpu_kernels(device: torch.device):
    """Torch's deterministic CPU kernels while the block runs (on a CPU fit only).

    The backward of indexing with repeated indices (``vertices[faces]``) is an
    accumulating ``index_put``, whose default CPU kernel adds in thread order,
    so two identical fits on more than one thread differed in the last bits;
    the deterministic kernel sorts the indices first, at no measurable cost.
    """
    if device.type != "cpu" or torch.are_deterministic_algorithms_enabled():
        yield
        return
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False)
        torch.utils.deterministic.fill_uninitialized_memory = fill
