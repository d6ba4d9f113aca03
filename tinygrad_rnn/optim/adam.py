"""Adam (L2 weight decay added to the gradient) and AdamW (weight decay decoupled from it)."""
from __future__ import annotations

from ..backend import ensure_array, get_array_module
from ..jitswitch import jit_kernel
from .optimizer import Optimizer, check_nonnegative


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction, as torch.optim.Adam.

    State per parameter: "step" (a float, as torch's step tensor holds), "exp_avg",
    "exp_avg_sq" and, with amsgrad, "max_exp_avg_sq" (arrays of the parameter's shape and dtype).

    Args:
        params: Parameters, or parameter groups (dicts).
        lr: learning rate. Default 1e-3.
        betas: decay rates of the first and second moment averages. Default (0.9, 0.999).
        eps: added to the denominator. Default 1e-8.
        weight_decay: L2 penalty added to the gradient (decoupled with
            `decoupled_weight_decay=True`, which is AdamW). Default 0.
        amsgrad: divide by the running maximum of the second moment. Default False.
        maximize: ascend instead of descend. Default False.
        decoupled_weight_decay: shrink the parameters directly, as AdamW. Default False.

    Examples:
        >>> lstm = nn.LSTM(3, 8)
        >>> opt = optim.Adam(lstm.parameters(), lr=1e-3)
        >>> output, _ = lstm(tg.randn(5, 2, 3))
        >>> output.pow(2).mean().backward()
        >>> opt.step()
        >>> sorted(opt.state[lstm.weight_hh_l0])
        ['exp_avg', 'exp_avg_sq', 'step']
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False):
        check_nonnegative(learning_rate=lr, epsilon=eps, weight_decay=weight_decay)
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _update(self, param, grad, group):
        # Python floats, so float32 arrays stay float32 (a numpy float64 scalar would upcast them).
        lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = (float(b) for b in group["betas"])
        xp = get_array_module(param._data)
        if group["maximize"]:
            grad = ensure_array(-grad)  # numpy makes a 0-d array's negation a scalar
        state = self.state.setdefault(param, {})
        if not state:
            state["step"] = 0.0
            state["exp_avg"] = xp.zeros_like(param._data)
            state["exp_avg_sq"] = xp.zeros_like(param._data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(param._data)
        state["step"] = step = state["step"] + 1
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                param._data *= 1 - lr * weight_decay
            else:
                grad = ensure_array(grad + weight_decay * param._data)
        step_size = lr / (1 - beta1 ** step)
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        adam_update_(param._data, grad, state["exp_avg"], state["exp_avg_sq"],
                     state["max_exp_avg_sq"] if group["amsgrad"] else None, 1 - beta1, beta2, step_size,
                     bias_correction2_sqrt, eps)


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, 2019), as torch.optim.AdamW: p <- p * (1 - lr * weight_decay)
    before the Adam step, the weight decay decoupled from the gradient.

    Args:
        params: Parameters, or parameter groups (dicts).
        lr: learning rate. Default 1e-3.
        betas: decay rates of the moment averages. Default (0.9, 0.999).
        eps: added to the denominator. Default 1e-8.
        weight_decay: decoupled weight decay. Default 1e-2.
        amsgrad: divide by the running maximum of the second moment. Default False.
        maximize: ascend instead of descend. Default False.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)


@jit_kernel
def adam_update_(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, weight, beta2, step_size, bias_correction2_sqrt,
                 eps):
    """One Adam step on the arrays, in place: the moments (weight = 1 - beta1 for the first's lerp,
    max_exp_avg_sq None without amsgrad), then the parameter. With two scratch arrays and the same
    operations in the same order as torch's formulas (so the same rounding), without a temporary
    per term. tinygrad_rnn.jit has it in one pass."""
    xp = get_array_module(param)
    scratch = _lerp_(exp_avg, grad, weight, xp)
    exp_avg_sq *= beta2
    xp.multiply(grad, 1 - beta2, out=scratch)
    scratch *= grad
    exp_avg_sq += scratch
    if max_exp_avg_sq is not None:
        exp_avg_sq = xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
    denom = xp.sqrt(exp_avg_sq)
    denom /= bias_correction2_sqrt
    denom += eps
    xp.multiply(exp_avg, -step_size, out=scratch)
    scratch /= denom
    param += scratch


def _lerp_(start, end, weight, xp):
    """start <- torch.lerp(start, end, weight) in place, by its two-branch formula (each branch exact
    at its own end); returns the scratch array it used."""
    scratch = xp.subtract(end, start, out=xp.empty_like(start))  # an array even for 0-d (numpy gives a scalar)
    if abs(weight) < 0.5:
        scratch *= weight
        start += scratch
    else:
        scratch *= 1 - weight
        xp.subtract(end, scratch, out=start)
    return scratch


def _lerp(start, end, weight):
    """torch.lerp(start, end, weight) as a new array."""
    out = start.copy()
    _lerp_(out, end, weight, get_array_module(start))
    return out
