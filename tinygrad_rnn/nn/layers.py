"""The feed-forward layers of torch.nn, with torch's arguments, parameter names, init and repr."""
from __future__ import annotations

import math
import operator
from collections import OrderedDict

from .. import creation
from ..errors import DTypeError, InvalidValueError, ShapeError
from . import functional as F
from . import init
from .module import Module, Parameter


def _empty_parameter(*shape, device=None, dtype=None):
    """A zero Parameter to be filled by an initialiser (torch's `Parameter(torch.empty(...))`)."""
    return Parameter(creation.zeros(*shape, dtype=dtype, device=device))


def _check_sizes(layer, **sizes):
    """Constructor sizes: integers >= 0, named in the message (the factory's would not say which)."""
    for name, n in sizes.items():
        try:
            operator.index(n)
        except TypeError:
            raise DTypeError(f"{layer}: {name} must be an integer, got {n!r}") from None
        if n < 0:
            raise ShapeError(f"{layer}: {name} must be non-negative, got {n}")


def _check_features(layer, input, expected, name, dim):
    F.check_tensor(input, type(layer).__name__)
    if input.ndim == 0 or input.shape[dim] != expected:
        got = input.shape[dim] if input.ndim else "a 0-d tensor"
        raise ShapeError(f"{type(layer).__name__}: expected input with {expected} features ({name}), "
                         f"got {got} (input shape {input.shape})")


class Linear(Module):
    """Applies an affine map, y = x @ weight.T + bias.

    weight `(out_features, in_features)` and bias `(out_features,)` start uniform in
    ±1/sqrt(in_features), torch's `kaiming_uniform_(a=sqrt(5))` default.

    Args:
        in_features: size of each input sample, the last dim of the input.
        out_features: size of each output sample.
        bias: if False, the layer learns no bias (`self.bias` is None). Default True.
        device: where the parameters live ("cpu", "cuda"). Default the CPU.
        dtype: the parameters' floating dtype. Default the default dtype (float32).

    Inputs:
        - **input** `(*, in_features)`: any number of leading dims.

    Outputs:
        - `(*, out_features)`, the leading dims as given.

    Examples:
        >>> lin = nn.Linear(3, 2)
        >>> lin(tg.randn(4, 3)).shape
        (4, 2)
        >>> lin
        Linear(in_features=3, out_features=2, bias=True)
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        _check_sizes("Linear", in_features=in_features, out_features=out_features)
        self.in_features = in_features
        self.out_features = out_features
        self.weight = _empty_parameter(out_features, in_features, device=device, dtype=dtype)
        if bias:
            self.bias = _empty_parameter(out_features, device=device, dtype=dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0  # as torch
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        _check_features(self, input, self.in_features, "in_features", -1)
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class BatchNorm1d(Module):
    """Batch normalisation over `(N, C)` or `(N, C, L)`, per channel C (Ioffe & Szegedy, 2015).

    Train mode normalises with the batch's statistics (biased variance) and updates the
    buffers `running_mean` / `running_var` (an exponential average with `momentum`, using the
    unbiased variance, or a cumulative average when momentum is None) and
    `num_batches_tracked`; eval mode normalises with the buffers.

    Args:
        num_features: C, the number of channels.
        eps: added to the variance, for stability. Default 1e-5.
        momentum: weight of the newest batch in the running averages; None for a cumulative
            average. Default 0.1.
        affine: learn a per-channel scale `weight` (ones) and shift `bias` (zeros). Default True.
        track_running_stats: keep the running buffers; without them eval mode uses batch
            statistics too. Default True.
        device: where parameters and buffers live.
        dtype: their floating dtype.
        bias: with `affine`, whether to learn the shift. Default True.

    Inputs:
        - **input** `(N, C)` or `(N, C, L)`; in train mode more than one value per channel.

    Outputs:
        - the input's shape.

    Examples:
        >>> bn = nn.BatchNorm1d(4)
        >>> out = bn(tg.randn(8, 4))
        >>> bool(out.mean(0).abs().max() < 1e-5), out.shape
        (True, (8, 4))
        >>> int(bn.num_batches_tracked.item())
        1
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None, *, bias=True):
        super().__init__()
        _check_sizes("BatchNorm1d", num_features=num_features)
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = _empty_parameter(num_features, device=device, dtype=dtype)
            if bias:
                self.bias = _empty_parameter(num_features, device=device, dtype=dtype)
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", creation.zeros(num_features, dtype=dtype, device=device))
            self.register_buffer("running_var", creation.ones(num_features, dtype=dtype, device=device))
            self.register_buffer("num_batches_tracked", creation.zeros((), dtype="int64", device=device))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)
        self.reset_parameters()

    def reset_running_stats(self):
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            init.zeros_(self.num_batches_tracked)

    def reset_parameters(self):
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        if F.check_tensor(input, "BatchNorm1d").ndim not in (2, 3):
            raise ShapeError(f"BatchNorm1d: expected 2D or 3D input (N, C) or (N, C, L), "
                             f"got {input.ndim}D input of shape {input.shape}")
        _check_features(self, input, self.num_features, "num_features", 1)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked._data = self.num_batches_tracked._data + 1
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / int(self.num_batches_tracked.item())
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(input, self.running_mean if track else None, self.running_var if track else None,
                            self.weight, self.bias, use_batch_stats, factor, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class LayerNorm(Module):
    """Normalises each sample over its last dims, `normalized_shape` (Ba et al., 2016).

    Args:
        normalized_shape: an int or a tuple: the trailing shape normalised over.
        eps: added to the (biased) variance. Default 1e-5.
        elementwise_affine: learn `weight` (ones) and `bias` (zeros) of `normalized_shape`.
            Default True.
        bias: with `elementwise_affine`, whether to learn the shift. Default True.
        device: where the parameters live.
        dtype: their floating dtype.

    Inputs:
        - **input** `(*, *normalized_shape)`.

    Outputs:
        - the input's shape.

    Examples:
        >>> ln = nn.LayerNorm(5)
        >>> ln(tg.randn(2, 3, 5)).shape
        (2, 3, 5)
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        _check_sizes("LayerNorm", **{f"normalized_shape[{i}]": n for i, n in enumerate(shape)})
        self.normalized_shape = tuple(operator.index(n) for n in shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = _empty_parameter(*self.normalized_shape, device=device, dtype=dtype)
            if bias:
                self.bias = _empty_parameter(*self.normalized_shape, device=device, dtype=dtype)
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        return F.layer_norm(F.check_tensor(input, "LayerNorm"), self.normalized_shape, self.weight, self.bias,
                            self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class Dropout(Module):
    """Zeroes each element with probability p in train mode, scaling the survivors by 1/(1-p).

    In eval mode (`module.eval()`) it returns its input unchanged. The mask is drawn from the
    global generator (`tg.manual_seed`).

    Args:
        p: the probability of zeroing an element, in [0, 1]. Default 0.5.
        inplace: accepted for torch's signature; the result is always a new tensor.

    Inputs:
        - **input** any shape.

    Outputs:
        - the input's shape.

    Examples:
        >>> drop = nn.Dropout(0.5)
        >>> sorted(set(drop(tg.ones(100)).numpy().tolist()))
        [0.0, 2.0]
        >>> drop.eval()(tg.ones(3)).numpy().tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise InvalidValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input):
        return F.dropout(input, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Embedding(Module):
    """A lookup table: integer indices -> rows of `weight (num_embeddings, embedding_dim)`.

    weight starts N(0, 1); the row at `padding_idx` starts at zero and gets no gradient.
    Repeated indices add their gradients into the same row.

    Args:
        num_embeddings: the number of rows (the vocabulary size).
        embedding_dim: the size of each row.
        padding_idx: a row that stays fixed (zeros unless you write it), or None. Negative
            values count from the end.
        max_norm: only None is supported.
        norm_type: accepted for torch's signature.
        scale_grad_by_freq: only False is supported.
        sparse: only False is supported.
        device: where the weight lives.
        dtype: its floating dtype.

    Inputs:
        - **input** `(*)`: integer indices (int64, or any integer dtype) in [0, num_embeddings).

    Outputs:
        - `(*, embedding_dim)`.

    Examples:
        >>> emb = nn.Embedding(10, 3, padding_idx=0)
        >>> emb(tg.tensor([[0, 2], [4, 5]])).shape
        (2, 2, 3)
        >>> emb.weight[0].numpy().tolist()
        [0.0, 0.0, 0.0]
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, device=None, dtype=None):
        super().__init__()
        _check_sizes("Embedding", num_embeddings=num_embeddings, embedding_dim=embedding_dim)
        if max_norm is not None or scale_grad_by_freq or sparse:
            raise NotImplementedError("Embedding: max_norm, scale_grad_by_freq and sparse are not supported")
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ShapeError(f"Embedding: padding_idx {padding_idx} must be within num_embeddings "
                                 f"({num_embeddings})")
            padding_idx %= num_embeddings
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        self.weight = _empty_parameter(num_embeddings, embedding_dim, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight._data[self.padding_idx] = 0

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        return s


class ModuleList(Module):
    """A list of modules that registers them, as torch.nn.ModuleList.

    A plain Python list of modules on a Module registers nothing (its parameters are not in
    `parameters()` or `state_dict()`); a ModuleList does, under the keys "0", "1", ..., kept in
    order after `insert` and `del`. It has no `forward`: iterate over it.

    Args:
        modules: an iterable of modules to start with, or None.

    Examples:
        >>> layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
        >>> len(list(layers.parameters()))
        6
        >>> list(layers.state_dict())[:2]
        ['0.weight', '0.bias']
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _key(self, index):
        size = len(self)
        index = operator.index(index)
        if not -size <= index < size:
            raise IndexError(f"index {index} is out of range for a {type(self).__name__} of {size} modules")
        return list(self._modules)[index % size]

    def _renumber(self, modules):
        """torch keeps keys "0", "1", ... in order after a deletion or an insertion."""
        self._modules.clear()
        for position, module in enumerate(modules):
            self.add_module(str(position), module)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return type(self)(list(self._modules.values())[index])
        return self._modules[self._key(index)]

    def __setitem__(self, index, module):
        self.add_module(self._key(index), module)

    def __delitem__(self, index):
        modules = list(self._modules.values())
        del modules[index if isinstance(index, slice) else list(self._modules).index(self._key(index))]
        self._renumber(modules)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __iadd__(self, modules):
        return self.extend(modules)

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def insert(self, index, module):
        modules = list(self._modules.values())
        modules.insert(index, module)
        self._renumber(modules)


class Sequential(ModuleList):
    """Modules applied in order, each to the previous one's output.

    Args:
        *args: the modules, named "0", "1", ...; or one OrderedDict of {name: module}.

    Inputs:
        - **input** what the first module takes.

    Outputs:
        - what the last module returns.

    Examples:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> net(tg.randn(5, 3)).shape
        (5, 2)
        >>> net[0]
        Linear(in_features=3, out_features=4, bias=True)
    """

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            super().__init__()
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            super().__init__(args)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return type(self)(OrderedDict(list(self._modules.items())[index]))
        return super().__getitem__(index)

    def forward(self, input):
        for module in self:
            input = module(input)
        return input


class ModuleDict(Module):
    """Modules by name, registered in insertion order, as torch.nn.ModuleDict.

    Args:
        modules: a mapping or an iterable of (name, module) pairs to start with, or None.

    Examples:
        >>> heads = nn.ModuleDict({"tag": nn.Linear(8, 2), "score": nn.Linear(8, 1)})
        >>> list(heads.keys())
        ['tag', 'score']
        >>> heads["score"](tg.randn(4, 8)).shape
        (4, 1)
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules):
        for key, module in (modules.items() if hasattr(modules, "items") else modules):
            self[key] = module

    def pop(self, key):
        return self._modules.pop(key)

    def clear(self):
        self._modules.clear()


class ReLU(Module):
    """Applies max(0, x) elementwise.

    Args:
        inplace: accepted for torch's signature; the result is always a new tensor.

    Inputs:
        - **input** any shape.

    Outputs:
        - the input's shape.
    """

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return input.relu()

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class GELU(Module):
    """Applies x Φ(x), Φ the standard normal CDF (Hendrycks & Gimpel, 2016).

    Args:
        approximate: "none" (through erf) or "tanh" (torch's tanh approximation). Default "none".

    Inputs:
        - **input** any shape.

    Outputs:
        - the input's shape.
    """

    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, input):
        return F.gelu(input, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Tanh(Module):
    """Applies tanh elementwise; any shape in, the same shape out."""

    def forward(self, input):
        return input.tanh()


class Sigmoid(Module):
    """Applies 1 / (1 + exp(-x)) elementwise; any shape in, the same shape out."""

    def forward(self, input):
        return input.sigmoid()


class LogSoftmax(Module):
    """Applies log(softmax(x)) along `dim`, computed stably (x - logsumexp(x)).

    Args:
        dim: the dim to normalise over. None takes torch's legacy choice: 0 for 0-, 1- and
            3-d inputs, else 1.

    Inputs:
        - **input** any shape.

    Outputs:
        - the input's shape; `exp` of it sums to 1 along `dim`.
    """

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        # torch's legacy rule when no dim is given: 0 for 0-, 1- and 3-d inputs, else 1
        dim = self.dim if self.dim is not None else (0 if input.ndim in (0, 1, 3) else 1)
        return input.log_softmax(dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Flatten(Module):
    """Joins dims `start_dim` .. `end_dim` into one.

    Args:
        start_dim: the first dim to join. Default 1 (the batch dim is kept).
        end_dim: the last dim to join. Default -1.

    Inputs:
        - **input** `(N, *dims)`.

    Outputs:
        - `(N, prod(dims))` with the defaults.

    Examples:
        >>> nn.Flatten()(tg.zeros(2, 3, 4)).shape
        (2, 12)
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Identity(Module):
    """Returns its input; takes (and ignores) any arguments, as torch's does."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input
