"""The Optimizer base: parameter groups, per-parameter state, and state_dict in torch's layout.

A subclass implements `_update(param, grad, group)` for one parameter at a time on raw
arrays, following torch's single-tensor (foreach=False) code, so trajectories match torch's.
Updates go through the parameter's own array module and write into `param._data` in place,
outside the graph.
"""
from __future__ import annotations

import warnings
from numbers import Number

import numpy as np

from .. import backend
from ..autograd import enable_grad, no_grad
from ..errors import ShapeError
from ..tensor import Tensor, check_grad_fits


class Optimizer:
    """Base of the optimizers: parameter groups, per-parameter state, torch-layout state dicts.

    `state` maps each parameter (the object itself, as in torch) to a dict of arrays and
    numbers; `param_groups` is a list of dicts, each with its `params` and its options.
    Updates run on raw arrays, in place, outside the graph; each bumps the parameter's
    version, so a graph saved before a step refuses to backward after it.

    Args:
        params: an iterable of Parameters, or of dicts `{"params": [...], <option>: value}`
            (parameter groups; options a group leaves out take the optimizer's defaults).
        defaults: the optimizer's options and their defaults.

    Examples:
        >>> model = nn.Linear(4, 2)
        >>> opt = optim.SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": 0.1}], lr=0.01)
        >>> [group["lr"] for group in opt.param_groups]
        [0.01, 0.1]
    """

    def __init__(self, params, defaults):
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors "
                            f"or dicts, but got a Tensor of shape {params.shape}")
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group):
        """Add a group; options it leaves out take the optimizer's defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"can't optimize a non-leaf Tensor (shape {p.shape})")
        if len({id(p) for p in group["params"]}) != len(group["params"]):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; "
                          "in future, this will cause an error", UserWarning, stacklevel=2)
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Reset every parameter's `.grad`: to None (the default), or to zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad._data = backend.get_array_module(p.grad._data).zeros_like(p.grad._data)

    def step(self, closure=None):
        """Update every parameter that has a gradient, once.

        Args:
            closure: a function that re-evaluates the model and returns the loss, or None.

        Returns:
            The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self._update(p, _checked_grad(p), group)
                        p._bump_version()  # a graph that saved p before this step must not use it after
        return loss

    def _update(self, param, grad, group):
        """Update `param._data` in place from `grad` (a raw array of its shape and dtype)."""
        raise NotImplementedError(f"{type(self).__name__} has no _update()")

    # ---- state --------------------------------------------------------------------------
    def state_dict(self):
        """The optimizer's state in torch's layout.

        Returns:
            `{"state": {index: {name: numpy array or number}}, "param_groups": [{..., "params":
            [index, ...]}]}`, parameters numbered in group order as torch does, arrays as host
            copies, so it saves with `tg.save` and loads into torch's optimizer too.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: {name: _to_host(value) for name, value in s.items()}
                 for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore from `state_dict()`'s output (ours or torch's); arrays go to each parameter's
        device and dtype.

        Args:
            state_dict: the dict `state_dict()` returned, for the same parameter groups.
        """
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, "
                             f"the optimizer has {len(self.param_groups)}")
        by_index = {}
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"loaded state dict's parameter group {i} has {len(saved['params'])} "
                                 f"parameters, the optimizer's has {len(group['params'])}")
            by_index.update(zip(saved["params"], group["params"]))
        state = {}
        for index, saved_state in state_dict["state"].items():
            if index not in by_index:
                raise ValueError(f"loaded state dict has state for parameter {index!r}, "
                                 f"which is in none of its parameter groups")
            param = by_index[index]
            state[param] = {name: _to_param(value, param, f"state[{index!r}][{name!r}]")
                            for name, value in saved_state.items()}
        groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            restored = {**self.defaults, **{k: v for k, v in saved.items() if k != "params"}}
            restored["params"] = group["params"]
            groups.append(restored)
        self.state = state
        self.param_groups = groups

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {group[k]}" for k in sorted(group) if k != "params")
        return "\n".join(lines) + "\n)"


def _to_host(value):
    """Arrays of any backend (or torch tensors) -> numpy copies; numbers pass through."""
    if value is None or isinstance(value, Number):
        return value
    return np.array(backend.host_array(value), copy=True)


def _to_param(value, param, where):
    """A saved state entry as an array beside `param` (its device; its dtype if floating)."""
    if value is None or isinstance(value, Number):
        return value
    host = np.array(backend.host_array(value), copy=True)
    if host.ndim == 0 and param.ndim != 0:
        return host.item()  # a counter such as Adam's 'step', which torch keeps as a 0-d tensor
    if tuple(host.shape) != param.shape:
        raise ShapeError(f"load_state_dict: {where} has shape {tuple(host.shape)}, "
                         f"its parameter has shape {param.shape}")
    dtype = param.dtype if host.dtype.kind == "f" else host.dtype
    return backend.asarray(host, dtype=dtype, device=param.device)


def check_nonnegative(**hyperparameters):
    """torch's constructor checks: 'Invalid learning rate: -0.1' and the like."""
    for name, value in hyperparameters.items():
        if not 0.0 <= value:
            raise ValueError(f"Invalid {name.replace('_', ' ')} value: {value}")


def _checked_grad(param):
    """param.grad's array, when it still fits the parameter (tensor.check_grad_fits raises, naming
    both, when it does not). Assigning `.grad` checks already, but `p.grad.data = other` swaps the
    storage behind that check, and then a (1,) gradient would broadcast over the whole parameter in
    silence, and a float64 one reach numpy's cast error inside the update. The cheap test first:
    this runs for every parameter at every step."""
    grad, data = param.grad._data, param._data
    if grad.shape != data.shape or grad.dtype != data.dtype or type(grad) is not type(data):
        check_grad_fits(param, param.grad, "optimizer step: .grad")
    return grad
