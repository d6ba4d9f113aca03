"""RMSprop: each step divided by a running root mean square of the gradient (Tieleman & Hinton)."""
from __future__ import annotations

from ..backend import get_array_module
from .adam import _lerp
from .optimizer import Optimizer, check_nonnegative


class RMSprop(Optimizer):
    """RMSprop, as torch.optim.RMSprop: s <- alpha s + (1 - alpha) g^2, p <- p - lr g / (sqrt(s) + eps).

    State per parameter: "step", "square_avg", and "momentum_buffer" / "grad_avg" when used.

    Args:
        params: Parameters, or parameter groups (dicts).
        lr: learning rate. Default 1e-2.
        alpha: decay of the running mean of g^2. Default 0.99.
        eps: added to the denominator. Default 1e-8.
        weight_decay: L2 penalty added to the gradient. Default 0.
        momentum: momentum on the scaled step. Default 0.
        centered: divide by an estimate of the variance (s minus the squared running mean of g).
            Default False.
        maximize: ascend instead of descend. Default False.
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
                 maximize=False):
        check_nonnegative(learning_rate=lr, epsilon=eps, weight_decay=weight_decay, momentum=momentum, alpha=alpha)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    def _update(self, param, grad, group):
        # Python floats, so float32 arrays stay float32 (a numpy float64 scalar would upcast them).
        lr, alpha, eps, weight_decay, momentum = (float(group[k]) for k in
                                                  ("lr", "alpha", "eps", "weight_decay", "momentum"))
        xp = get_array_module(param._data)
        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            grad = grad + weight_decay * param._data
        state = self.state.setdefault(param, {})
        if not state:
            state["step"] = 0.0
            state["square_avg"] = xp.zeros_like(param._data)
            if momentum > 0:
                state["momentum_buffer"] = xp.zeros_like(param._data)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(param._data)
        state["step"] += 1
        state["square_avg"] = square_avg = state["square_avg"] * alpha + (1 - alpha) * grad * grad
        if group["centered"]:
            state["grad_avg"] = grad_avg = _lerp(state["grad_avg"], grad, 1 - alpha)
            square_avg = square_avg - grad_avg * grad_avg
        step = grad / (xp.sqrt(square_avg) + eps)
        if momentum > 0:
            state["momentum_buffer"] = step = state["momentum_buffer"] * momentum + step
        param._data += -lr * step
