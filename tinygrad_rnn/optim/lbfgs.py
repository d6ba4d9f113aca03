"""L-BFGS, as torch.optim.LBFGS (without line search): a quasi-Newton step from the last
`history_size` (step, gradient change) pairs, several iterations per step() through a closure."""
from __future__ import annotations

from ..autograd import enable_grad, no_grad
from ..backend import get_array_module
from .optimizer import Optimizer, check_nonnegative


class LBFGS(Optimizer):
    """torch.optim.LBFGS with line_search_fn=None (strong Wolfe is not implemented): step(closure)
    runs up to max_iter iterations; the closure re-evaluates the loss (zero_grad, forward, backward).
    One parameter group only, as in torch. State lives with the first parameter, as in torch."""

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 history_size=100, line_search_fn=None):
        check_nonnegative(learning_rate=lr)
        if line_search_fn is not None:
            raise NotImplementedError(f"LBFGS: line_search_fn={line_search_fn!r} is not implemented here; "
                                      "use line_search_fn=None")
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
                if float(flat_grad @ d) > -tolerance_change:  # not a descent direction any more
                    break
                self._add(t, d)
                evals = 0
                if n_iter != max_iter:
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
