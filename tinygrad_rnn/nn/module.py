"""Parameter and Module: ordered registries of parameters, buffers and submodules, as in torch."""
from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from .. import backend
from ..autograd import RemovableHandle
from ..errors import DTypeError, ShapeError
from ..tensor import Tensor, cat, split_device_dtype

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):
    """A leaf tensor that a Module registers as trainable when assigned as its attribute.

    Args:
        data: a Tensor (its storage is shared, as torch's) or anything `Tensor()` takes.
        requires_grad: Default True.

    Examples:
        >>> class Scale(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.gain = nn.Parameter(tg.ones(3))
        ...     def forward(self, x):
        ...         return x * self.gain
        >>> [name for name, _ in Scale().named_parameters()]
        ['gain']
    """

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        if isinstance(data, Tensor):
            data = data._data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base of every layer, as torch.nn.Module.

    Attributes that are Parameters, Modules or buffers (`register_buffer`) are registered in
    insertion order, which fixes the order of `parameters()` and of `state_dict()` keys (torch's
    order, so state dicts move both ways). A subclass calls `super().__init__()` first, then
    assigns its parameters and submodules, and defines `forward`; calling the module runs its
    forward hooks around `forward`.

    Examples:
        >>> class TwoLayer(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.hidden = nn.Linear(3, 8)
        ...         self.out = nn.Linear(8, 1)
        ...     def forward(self, x):
        ...         return self.out(self.hidden(x).tanh())
        >>> model = TwoLayer()
        >>> model(tg.randn(4, 3)).shape
        (4, 1)
        >>> list(model.state_dict())
        ['hidden.weight', 'hidden.bias', 'out.weight', 'out.bias']
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration ------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                                 f"before assigning {name!r}")
        if isinstance(value, Parameter):
            target = self._parameters
        elif isinstance(value, Module):
            target = self._modules
        elif name in self._parameters:
            if value is not None:  # torch refuses too: the weight would silently stop training
                raise TypeError(f"cannot assign {type(value).__name__} as parameter '{name}' of "
                                f"{type(self).__name__} (Parameter or None expected)")
            target = self._parameters
        elif name in self._buffers:
            target = self._buffers
        else:
            for registry in (self._parameters, self._buffers, self._modules):
                registry.pop(name, None)
            object.__setattr__(self, name, value)
            return
        for registry in (self._parameters, self._buffers, self._modules):
            if registry is not target:
                registry.pop(name, None)
        target[name] = value  # replacing keeps the key's place, so state_dict order stays torch's
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        """Register `param` (a Parameter, or None for an absent one such as `bias=False`) as `name`."""
        if param is None:
            self._parameters[name] = None
        else:
            setattr(self, name, param)

    def register_buffer(self, name, tensor, persistent=True):
        """Register a non-trainable tensor, such as running statistics, as `name`.

        Args:
            name: the attribute name.
            tensor: a Tensor, or None.
            persistent: saved in `state_dict()` when True; otherwise it only moves with `.to()`.
        """
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if not persistent:
            self.__dict__.setdefault("_non_persistent", set()).add(name)

    def add_module(self, name, module):
        """Register `module` as the submodule `name` (what attribute assignment does)."""
        self._modules[name] = module

    # ---- traversal -----------------------------------------------------------------
    def named_modules(self, prefix=""):
        """Yield `(name, module)` for this module and every submodule, depth first, each once."""
        seen, stack = set(), [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{n}" if name else n, m) for n, m in module._modules.items() if m is not None]
            stack.extend(reversed(children))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named(self, registry, prefix="", recurse=True):
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{module_name}.{name}" if module_name else name), value

    def named_parameters(self, prefix="", recurse=True):
        """Yield `(dotted name, Parameter)` in registration order, each shared parameter once.

        Args:
            prefix: prepended to every name.
            recurse: include the submodules' parameters. Default True.
        """
        return self._named("_parameters", prefix, recurse)

    def parameters(self, recurse=True):
        """Yield the Parameters, in `named_parameters()` order: what an optimizer takes."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        return self._named("_buffers", prefix, recurse)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """Call `fn(module)` on every submodule, then on this one (children first, as torch); returns self."""
        for m in list(self.modules())[::-1]:
            fn(m)
        return self

    # ---- modes -----------------------------------------------------------------------
    def train(self, mode=True):
        """Set training mode (Dropout drops, BatchNorm uses batch statistics) here and below; returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        """Set evaluation mode, `train(False)`; returns self."""
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Reset every parameter's `.grad`: to None (the default), or to zeros."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:  # zeros, not grad * 0: an exploded inf/NaN gradient must not survive
                p.grad._data = backend.get_array_module(p.grad._data).zeros_like(p.grad._data)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    # ---- device / dtype ------------------------------------------------------------
    def _convert(self, fn):
        for t in list(self.parameters()) + [b for b in self.buffers() if b is not None]:
            t._data = fn(t._data)
            if t.grad is not None:
                t.grad._data = fn(t.grad._data)
        return self

    def to(self, device=None, dtype=None):
        """Move and/or cast every parameter and buffer, in place (as torch does for modules).

        Args:
            device: "cpu", "cuda", "cuda:1", or a dtype (Tensor.to's forms: `.to("float64")`).
            dtype: a floating dtype; integer buffers keep theirs.

        Returns:
            The module itself.

        Examples:
            >>> lin = nn.Linear(2, 2).to("float64")
            >>> lin.weight.dtype
            dtype('float64')
        """
        device, dtype = split_device_dtype(device, dtype)
        if dtype is not None and dtype.kind != "f":
            raise DTypeError(f"{type(self).__name__}.to: modules take floating dtypes only, got {dtype}")
        if device is not None:
            self._convert(lambda a: backend.to_device(a, device))
        if dtype is not None:
            self._convert(lambda a: a.astype(dtype) if a.dtype.kind == "f" else a)
        return self

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    def half(self):
        return self.to(dtype=np.float16)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index=0):
        return self.to(f"cuda:{index}")

    # ---- state ------------------------------------------------------------------------
    def _state_items(self, prefix=""):
        """(key, tensor) in torch's state_dict order. Unlike named_modules, a module reached
        twice (Sequential(shared, shared)) is listed under each of its names, as in torch."""
        skip = self.__dict__.get("_non_persistent", ())
        for name, value in self._parameters.items():
            if value is not None:
                yield prefix + name, value
        for name, value in self._buffers.items():
            if value is not None and name not in skip:
                yield prefix + name, value
        for name, module in self._modules.items():
            if module is not None:
                yield from module._state_items(f"{prefix}{name}.")

    def state_dict(self, *, prefix="", keep_vars=False):
        """The parameters and persistent buffers by dotted name, in torch's key order.

        Args:
            prefix: prepended to every key.
            keep_vars: give the Parameters and buffer Tensors themselves instead of copies.

        Returns:
            An OrderedDict of {name: numpy array} (host copies), which `load_state_dict` and
            torch's `load_state_dict` (after `torch.from_numpy`) both take.

        Examples:
            >>> list(nn.LSTM(3, 4).state_dict())
            ['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0']
        """
        return OrderedDict((k, v if keep_vars else np.array(v.numpy(), copy=True))
                           for k, v in self._state_items(prefix))

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters and buffers, in place.

        All or nothing: every value is checked and converted to its target's dtype and device
        before the first is written, so a bad entry leaves the model as it was.

        Args:
            state_dict: {name: numpy array, Tensor, torch tensor or anything with `.numpy()`}.
            strict: missing and unexpected keys are an error. Default True.

        Returns:
            A named tuple `(missing_keys, unexpected_keys)`.

        Raises:
            ShapeError: missing or unexpected keys (strict), or a shape that differs.
            DTypeError: a value that is not numeric.

        Examples:
            >>> a, b = nn.Linear(3, 2), nn.Linear(3, 2)
            >>> b.load_state_dict(a.state_dict())
            IncompatibleKeys(missing_keys=[], unexpected_keys=[])
        """
        own = OrderedDict(self._state_items())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched, uncastable, arrays = [], [], {}
        for key, target in own.items():
            if key not in state_dict:
                continue
            try:
                value = backend.host_array(state_dict[key])
            except (TypeError, ValueError) as e:  # a ragged list, say
                uncastable.append(f"{key}: not an array ({e})")
                continue
            if tuple(value.shape) != target.shape:
                mismatched.append(f"{key}: checkpoint {tuple(value.shape)} vs model {target.shape}")
            elif value.dtype.kind not in "biufc":  # strings, objects, dates: no number to copy
                uncastable.append(f"{key}: checkpoint dtype {value.dtype} cannot be copied into {target.dtype}")
            else:
                arrays[key] = value
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        if mismatched:
            problems.append("shape mismatch: " + "; ".join(mismatched))
        if problems:
            raise ShapeError(f"load_state_dict into {type(self).__name__}: " + ". ".join(problems))
        if uncastable:
            raise DTypeError(f"load_state_dict into {type(self).__name__}: " + "; ".join(uncastable))
        # Converted and moved first (a failure here, out of device memory say, writes nothing) ...
        ready = {key: backend.asarray(value.astype(own[key].dtype, copy=False), device=own[key].device)
                 for key, value in arrays.items()}
        for key, value in ready.items():  # ... then written, which cannot fail half way
            target = own[key]
            target._data[...] = value
            target._bump_version()  # in place, as torch's copy_: views see it, saved graphs notice
        return IncompatibleKeys(missing, unexpected)

    # ---- calling / printing ---------------------------------------------------------
    def forward(self, *args, **kwargs):
        """What calling the module computes; every subclass defines it."""
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        hooks = self.__dict__.get("_hooks")
        if not hooks:
            return self.forward(*args, **kwargs)
        for hook in list(hooks["forward_pre"].values()):
            changed = hook(self, args)
            if changed is not None:
                args = changed if isinstance(changed, tuple) else (changed,)
        backward_hooks = hooks["backward"]
        gate = _BackwardHookGate(self, backward_hooks) if backward_hooks else None
        if gate is not None:
            args = gate.wrap_inputs(args)
        out = self.forward(*args, **kwargs)
        for hook in list(hooks["forward"].values()):
            changed = hook(self, args, out)
            if changed is not None:
                out = changed
        return gate.wrap_outputs(out) if gate is not None else out

    def _register(self, kind, hook):
        hooks = self.__dict__.setdefault("_hooks", {"forward_pre": {}, "forward": {}, "backward": {}})[kind]
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle

    def register_forward_pre_hook(self, hook):
        """Run `hook(module, args)` before forward; it returns None or new args. Returns a handle with `remove()`."""
        return self._register("forward_pre", hook)

    def register_forward_hook(self, hook):
        """Run `hook(module, args, output)` after forward; it returns None or a new output. Returns a handle."""
        return self._register("forward", hook)

    def register_full_backward_hook(self, hook):
        """Run `hook(module, grad_input, grad_output)` once per backward, when the gradients with
        respect to the module's tensor inputs are known (as in torch); it returns None or a new
        grad_input tuple. Returns a handle with `remove()`."""
        return self._register("backward", hook)

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        for name, module in self._modules.items():
            body = repr(module).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        head = f"{type(self).__name__}(" + (extra + "\n  " if extra else "\n  ")
        return head + "\n  ".join(lines) + "\n)"


class _BackwardHookGate:
    """What lets a module backward hook see whole gradients at once, as torch's does: the
    module's tensor arguments that require grad, and its tensor outputs (the top-level ones),
    each pass through one packing node (their flattened values concatenated, then viewed back).
    A tensor hook on a packing node receives every input's (or output's) gradient together;
    what the module hook returns replaces the inputs' gradients.

    grad_input has one entry per positional argument (None for non-tensors, zeros for tensors
    that do not require grad); grad_output one per top-level output (None for non-tensors)."""

    def __init__(self, module, hooks):
        self.module, self.hooks = module, hooks
        self.grad_output, self.n_inputs, self.input_positions = (), 0, None

    def wrap_inputs(self, args):
        self.n_inputs = len(args)
        # shapes only, never the tensors: a kept loss must not keep the module's inputs alive
        self.zero_shapes = {i: a.shape for i, a in enumerate(args) if isinstance(a, Tensor) and not a.requires_grad}
        positions = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
        if not positions:
            return args
        self.input_positions = positions
        args = list(args)
        for i, view in zip(positions, self._pack([args[i] for i in positions], self._on_grad_input)):
            args[i] = view
        return tuple(args)

    def wrap_outputs(self, out):
        single = isinstance(out, Tensor)
        items = [out] if single else list(out) if isinstance(out, (tuple, list)) else []
        positions = [i for i, t in enumerate(items) if isinstance(t, Tensor) and t.requires_grad]
        if not positions:
            return out
        self.n_outputs, self.output_positions = len(items), positions
        for i, view in zip(positions, self._pack([items[i] for i in positions], self._on_grad_output)):
            items[i] = view
        if single:
            return items[0]
        return type(out)(*items) if hasattr(out, "_fields") else type(out)(items)

    def _pack(self, tensors, on_grad):
        dtypes = {t.dtype for t in tensors}
        if len(dtypes) > 1:
            raise DTypeError(f"{type(self.module).__name__}: backward hooks need the module's tensors to share "
                             f"one dtype, got {sorted(map(str, dtypes))}")
        self.shapes = getattr(self, "shapes", {})
        packed = cat([t.reshape(-1) for t in tensors])
        self.shapes[on_grad.__name__] = [t.shape for t in tensors]
        packed.register_hook(on_grad)
        views, start = [], 0
        for t in tensors:
            views.append(packed[start:start + t.numel()].reshape(t.shape))
            start += t.numel()
        return views

    def _pieces(self, grad, which, positions, length):
        """The packed gradient cut back into one Tensor per position, None elsewhere."""
        out, start = [None] * length, 0
        for i, shape in zip(positions, self.shapes[which]):
            size = int(np.prod(shape))
            out[i] = Tensor._make(grad[start:start + size].reshape(shape))
            start += size
        return out

    def _on_grad_output(self, grad):
        grad = grad._data
        self.grad_output = tuple(self._pieces(grad, "_on_grad_output", self.output_positions, self.n_outputs))
        if self.input_positions is None:  # no input gradient will come: torch calls now, with Nones
            if self._fire((None,) * self.n_inputs) is not None:
                raise TypeError(f"backward hook of {type(self.module).__name__}: no input requires grad, "
                                "so the hook must return None")

    def _on_grad_input(self, grad):
        grad = grad._data
        pieces = self._pieces(grad, "_on_grad_input", self.input_positions, self.n_inputs)
        xp = backend.get_array_module(grad)
        for i, shape in self.zero_shapes.items():  # a tensor without grad: zeros, as torch
            pieces[i] = Tensor._make(xp.zeros(shape, dtype=grad.dtype))
        replaced = self._fire(tuple(pieces))
        if replaced is None:
            return None
        if len(replaced) != self.n_inputs:
            raise ValueError(f"backward hook of {type(self.module).__name__} returned {len(replaced)} gradients "
                             f"for {self.n_inputs} inputs")
        return Tensor._make(xp.concatenate([(g._data if isinstance(g, Tensor) else g).reshape(-1).astype(
            grad.dtype, copy=False) for g in (replaced[i] for i in self.input_positions)]))

    def _fire(self, grad_input):
        result = None
        for hook in list(self.hooks.values()):
            changed = hook(self.module, grad_input, self.grad_output)
            if changed is not None:
                grad_input = result = tuple(changed)
        self.grad_output = ()  # fired: nothing of this backward stays with the graph
        return result
