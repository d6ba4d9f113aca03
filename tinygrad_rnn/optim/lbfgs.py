"""L-BFGS, as torch.optim.LBFGS: a quasi-Newton step from the last `history_size` (step, gradient
change) pairs, several iterations per step() through a closure, with a fixed step or torch's
strong-Wolfe line search (`line_search_fn="strong_wolfe"`)."""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

from ..autograd import enable_grad, no_grad
from ..backend import get_array_module
from ..errors import InvalidValueError
from .optimizer import Optimizer, check_nonnegative


class LBFGS(Optimizer):
    """L-BFGS, as torch.optim.LBFGS: `step(closure)` runs up to max_iter quasi-Newton iterations.

    The closure re-evaluates the loss (zero_grad, forward, backward) and returns it. One
    parameter group only, and the state lives with the first parameter, both as in torch.

    Args:
        params: Parameters (one group).
        lr: step size. Default 1.
        max_iter: iterations per `step()`. Default 20.
        max_eval: closure evaluations per `step()`. Default max_iter * 5 // 4.
        tolerance_grad: stop when the largest gradient entry is at most this. Default 1e-7.
        tolerance_change: stop when the loss or the step changes less. Default 1e-9.
        history_size: (step, gradient change) pairs kept. Default 100.
        line_search_fn: None (a step of lr, the first one scaled by the gradient's size) or
            "strong_wolfe". Default None.

    Examples:
        >>> w = nn.Parameter(tg.tensor([1.5, -0.5]))
        >>> opt = optim.LBFGS([w], line_search_fn="strong_wolfe")
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = ((w - 3.0) ** 2).sum()
        ...     loss.backward()
        ...     return loss
        >>> _ = opt.step(closure)
        >>> [round(float(v), 4) for v in w.numpy()]
        [3.0, 3.0]
    """

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 history_size=100, line_search_fn=None):
        check_nonnegative(learning_rate=lr)
        if line_search_fn not in (None, "strong_wolfe"):
            raise InvalidValueError(f"LBFGS: line_search_fn must be None or 'strong_wolfe', got {line_search_fn!r}")
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_iter * 5 // 4 if max_eval is None
                                      else max_eval, tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change, history_size=history_size,
                                      line_search_fn=line_search_fn))
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params = self.param_groups[0]["params"]

    def _flat_grad(self):
        xp = get_array_module(self._params[0]._data)
        return xp.concatenate([(p.grad._data if p.grad is not None else xp.zeros_like(p._data)).reshape(-1)
                               for p in self._params])

    def _add(self, step_size, direction):
        """p += step_size * direction, the flat direction cut back into the parameters."""
        offset = 0
        for p in self._params:
            p._data += step_size * direction[offset:offset + p._data.size].reshape(p._data.shape)
            p._bump_version()
            offset += p._data.size

    def _evaluate_along(self, closure, step_size, direction):
        """(loss, flat gradient) at params + step_size * direction; the parameters are put back after."""
        saved = [p._data.copy() for p in self._params]
        self._add(step_size, direction)
        with enable_grad():
            loss = float(closure())
        flat_grad = self._flat_grad()
        for p, data in zip(self._params, saved):
            p._data[...] = data
            p._bump_version()
        return loss, flat_grad

    def step(self, closure):
        """One optimisation step of up to max_iter iterations; returns the first loss, as torch."""
        if closure is None:
            raise ValueError("LBFGS.step needs a closure that re-evaluates the model and returns the loss")
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change, history_size = (group[k] for k in
                                                          ("tolerance_grad", "tolerance_change", "history_size"))
        state = self.state.setdefault(self._params[0], {"func_evals": 0, "n_iter": 0})
        with enable_grad():
            orig_loss = closure()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._flat_grad()
        xp = get_array_module(flat_grad)
        if float(xp.abs(flat_grad).max()) <= tolerance_grad:
            return orig_loss
        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        h_diag, prev_flat_grad, prev_loss = state.get("H_diag"), state.get("prev_flat_grad"), state.get("prev_loss")
        n_iter = 0
        with no_grad():
            while n_iter < max_iter:
                n_iter += 1
                state["n_iter"] += 1
                if state["n_iter"] == 1:
                    d, old_dirs, old_stps, ro, h_diag = -flat_grad, [], [], [], 1
                else:
                    d, h_diag = _direction(flat_grad, prev_flat_grad, d, t, old_dirs, old_stps, ro, history_size,
                                           h_diag)
                prev_flat_grad, prev_loss = flat_grad.copy(), loss
                # in the gradients' dtype, as torch's tensor arithmetic: float32 runs round as torch's do
                t = min(1.0, 1.0 / xp.abs(flat_grad).sum()) * lr if state["n_iter"] == 1 else lr
                gtd = flat_grad @ d  # the slope along d
                if float(gtd) > -tolerance_change:  # not a descent direction any more
                    break
                evals = 0
                if group["line_search_fn"] == "strong_wolfe":
                    loss, flat_grad, t, evals = _strong_wolfe(
                        partial(self._evaluate_along, closure), t, d, loss, flat_grad, gtd,
                        tolerance_change, max_ls=max_eval - current_evals)
                    self._add(t, d)
                else:
                    self._add(t, d)
                    if n_iter != max_iter:  # as torch: the last iteration's loss is not looked at
                        with enable_grad():
                            loss = float(closure())
                        flat_grad = self._flat_grad()
                        evals = 1
                current_evals += evals
                state["func_evals"] += evals
                if (n_iter == max_iter or current_evals >= max_eval
                        or float(xp.abs(flat_grad).max()) <= tolerance_grad
                        or float(xp.abs(d * t).max()) <= tolerance_change
                        or abs(loss - prev_loss) < tolerance_change):
                    break
        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=h_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss



def _direction(flat_grad, prev_flat_grad, d, t, old_dirs, old_stps, ro, history_size, h_diag):
    """The two-loop recursion: -H grad from the stored (step, gradient change) pairs, after adding
    the newest when its curvature y.s is positive. Returns the direction and the new H_diag."""
    y = flat_grad - prev_flat_grad
    s = d * t
    ys = y @ s  # scalars stay in the gradients' dtype, as torch's 0-d tensors
    if ys > 1e-10:
        if len(old_dirs) == history_size:
            old_dirs.pop(0), old_stps.pop(0), ro.pop(0)
        old_dirs.append(y), old_stps.append(s), ro.append(1.0 / ys)
        h_diag = ys / (y @ y)
    alphas = [0.0] * len(old_dirs)
    q = -flat_grad
    for i in range(len(old_dirs) - 1, -1, -1):
        alphas[i] = (old_stps[i] @ q) * ro[i]
        q = q - alphas[i] * old_dirs[i]
    r = q * h_diag
    for i in range(len(old_dirs)):
        beta = (old_dirs[i] @ r) * ro[i]
        r = r + (alphas[i] - beta) * old_stps[i]
    return r, h_diag


class _Point(NamedTuple):
    """A trial step of the line search: its size, the loss and flat gradient there, and the slope along d."""
    t: object
    loss: float
    grad: object
    slope: object


def _strong_wolfe(evaluate, t, d, loss, grad, slope, tolerance_change, max_ls, c1=1e-4, c2=0.9):
    """torch's line search (from lswolfe.lua): a step along d meeting the strong Wolfe conditions
    (loss below loss + c1 t slope, |slope there| at most c2 |slope|). First widen t until an
    interval must hold such a point, then shrink that interval by cubic interpolation. At most
    max_ls evaluations, evaluate(t, d) -> (loss, flat grad) at x + t d. Returns (loss, grad, t, evaluations)."""
    xp = get_array_module(d)
    d_norm = xp.abs(d).max()

    def at(step_size):
        f, g = evaluate(step_size, d)
        return _Point(step_size, f, g, g @ d)

    def too_high(point):  # fails the sufficient decrease (Armijo) condition; NaN does not, as in torch
        return point.loss > loss + c1 * point.t * slope

    def flat_enough(point):
        return abs(point.slope) <= -c2 * slope

    previous, new = _Point(0, loss, grad, slope), at(t)
    evals, done, bracket = 1, False, None
    while evals <= max_ls:  # evals - 1 widenings so far, as torch's ls_iter
        if too_high(new) or (evals > 2 and new.loss >= previous.loss):
            bracket = [previous, new]  # the minimum lies between
            break
        if flat_enough(new):
            bracket, done = [new], True
            break
        if new.slope >= 0:  # rising again: between, too
            bracket = [previous, new]
            break
        # still descending: a longer step, between 1.01 and 10 times this one's
        t = _cubic_minimum(previous, new, bounds=(new.t + 0.01 * (new.t - previous.t), new.t * 10))
        previous, new = new, at(t)
        evals += 1
    if bracket is None:  # out of evaluations while widening
        bracket = [_Point(0, loss, grad, slope), new]

    low, high = (0, 1) if bracket[0].loss <= bracket[-1].loss else (1, 0)
    stuck = False  # whether the last trial, too, landed near an end of the interval
    while not done and evals <= max_ls:
        if abs(bracket[1].t - bracket[0].t) * d_norm < tolerance_change:
            break
        t = _cubic_minimum(bracket[0], bracket[1])
        left, right = min(bracket[0].t, bracket[1].t), max(bracket[0].t, bracket[1].t)
        margin = 0.1 * (right - left)
        if min(right - t, t - left) < margin:
            # twice near an end, or outside: a tenth of the interval in from the nearer end
            if stuck or t >= right or t <= left:
                t = right - margin if abs(t - right) < abs(t - left) else left + margin
                stuck = False
            else:
                stuck = True
        else:
            stuck = False
        new = at(t)
        evals += 1
        if too_high(new) or new.loss >= bracket[low].loss:
            bracket[high] = new
            low, high = (0, 1) if bracket[0].loss <= bracket[1].loss else (1, 0)
        else:
            if flat_enough(new):
                done = True
            elif new.slope * (bracket[high].t - bracket[low].t) >= 0:
                bracket[high] = bracket[low]  # the minimum lies on the other side of the new point
            bracket[low] = new
    best = bracket[low]
    return best.loss, best.grad, best.t, evals


def _cubic_minimum(a, b, bounds=None):
    """Where the cubic through points a and b (values and slopes at a.t, b.t) has its minimum,
    clamped to bounds (default: between the two); the middle of the bounds when it has none."""
    low, high = bounds if bounds is not None else (min(a.t, b.t), max(a.t, b.t))
    d1 = a.slope + b.slope - 3 * (a.loss - b.loss) / (a.t - b.t)
    square = d1 ** 2 - a.slope * b.slope
    if square < 0:
        return (low + high) / 2.0
    d2 = square ** 0.5
    near, far = (a, b) if a.t <= b.t else (b, a)  # the formula measures back from the farther point
    minimum = far.t - (far.t - near.t) * ((far.slope + d2 - d1) / (far.slope - near.slope + 2 * d2))
    return min(max(minimum, low), high)
