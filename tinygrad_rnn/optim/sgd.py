"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay."""
from __future__ import annotations

from ..backend import get_array_module
from ..buffers import empty_like
from .optimizer import Optimizer, check_nonnegative


class SGD(Optimizer):
    """Stochastic gradient descent, as torch.optim.SGD.

    With g the gradient (plus weight_decay * p): v <- momentum * v + (1 - dampening) * g,
    then p <- p - lr * v (or p - lr * (g + momentum * v) with nesterov). State per parameter,
    only with momentum: "momentum_buffer", an array of its shape.

    Args:
        params: Parameters, or parameter groups (dicts).
        lr: learning rate. Default 1e-3.
        momentum: momentum factor. Default 0.
        dampening: dampening of the momentum. Default 0.
        weight_decay: L2 penalty added to the gradient. Default 0.
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0). Default False.
        maximize: ascend instead of descend. Default False.

    Examples:
        >>> model = nn.Linear(3, 1)
        >>> opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> loss = model(tg.randn(8, 3)).pow(2).mean()
        >>> opt.zero_grad()
        >>> loss.backward()
        >>> opt.step()
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False):
        check_nonnegative(learning_rate=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def _update(self, param, grad, group):
        # Python floats, so float32 arrays stay float32 (a numpy float64 scalar would upcast them).
        lr, momentum, dampening, weight_decay = (float(group[k]) for k in
                                                 ("lr", "momentum", "dampening", "weight_decay"))
        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            grad = grad + weight_decay * param._data
        if momentum != 0:
            state = self.state.setdefault(param, {})
            buf = state.get("momentum_buffer")
            buf = grad.copy() if buf is None else buf * momentum + (1 - dampening) * grad
            state["momentum_buffer"] = buf
            grad = grad + momentum * buf if group["nesterov"] else buf
        # the step's scratch from the buffer cache: a fresh parameter-sized array is faulted in
        param._data += get_array_module(grad).multiply(grad, -lr, out=empty_like(grad))
