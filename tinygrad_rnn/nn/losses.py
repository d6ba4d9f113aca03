"""Loss modules: thin holders of the functional losses' options, with torch's signatures.

Class weights (and BCEWithLogitsLoss's pos_weight) are buffers, as in torch, so they
move with `.to(device)` and appear in state_dict when given.
"""
from __future__ import annotations

import warnings

from ..tensor import Tensor
from . import functional as F
from .module import Module


def _legacy_reduction(size_average, reduce):
    """torch's mapping of the deprecated size_average/reduce flags to a reduction name."""
    warnings.warn("size_average and reduce are deprecated; use reduction='none'|'mean'|'sum'",
                  UserWarning, stacklevel=3)
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def _optional_tensor(value):
    return value if value is None or isinstance(value, Tensor) else Tensor(value)


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        if size_average is not None or reduce is not None:
            reduction = _legacy_reduction(size_average, reduce)
        self.reduction = reduction


class _WeightedLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", _optional_tensor(weight))


class CrossEntropyLoss(_WeightedLoss):
    """Cross entropy of logits against class indices or class probabilities: `log_softmax`
    over the class dim, then the negative log-likelihood (`F.cross_entropy`).

    Args:
        weight: a `(C,)` tensor of per-class weights, or None. Kept as a buffer.
        size_average: deprecated (torch's); use `reduction`.
        reduce: deprecated (torch's); use `reduction`.
        ignore_index: a target value that contributes nothing (and is left out of the mean).
            Default -100.
        reduction: "none" (a loss per element), "mean" or "sum". Default "mean". The mean
            divides by the summed weights of the counted targets.
        label_smoothing: e in [0, 1]: the target becomes (1 - e) one-hot + e / C. Default 0.

    Inputs:
        - **input** `(N, C)`, `(N, C, d1, ...)` or `(C,)`: logits, a floating dtype.
        - **target** `(N,)`, `(N, d1, ...)` or `()`: class indices (int64 or uint8);
          or class probabilities of input's shape.

    Outputs:
        - a scalar; with reduction="none" the target's shape.

    Examples:
        >>> loss_fn = nn.CrossEntropyLoss()
        >>> logits = tg.randn(4, 5, requires_grad=True)
        >>> loss = loss_fn(logits, tg.tensor([1, 0, 4, 2]))
        >>> loss.backward()
        >>> loss.shape, logits.grad.shape
        ((), (4, 5))
    """

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of log-probabilities at class indices (`F.nll_loss`).

    Args:
        weight: a `(C,)` tensor of per-class weights, or None. Kept as a buffer.
        size_average: deprecated (torch's); use `reduction`.
        reduce: deprecated (torch's); use `reduction`.
        ignore_index: a target value that contributes nothing. Default -100.
        reduction: "none" (a loss per element), "mean" or "sum". Default "mean".

    Inputs:
        - **input** `(N, C)`, `(N, C, d1, ...)` or `(C,)`: log-probabilities (e.g. from `LogSoftmax`).
        - **target** `(N,)`, `(N, d1, ...)` or `()`: class indices (int64 or uint8).

    Outputs:
        - a scalar; with reduction="none" the target's shape.

    Examples:
        >>> log_probs = tg.randn(3, 4).log_softmax(1)
        >>> nn.NLLLoss(reduction="none")(log_probs, tg.tensor([0, 3, 1])).shape
        (3,)
    """

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class BCEWithLogitsLoss(_WeightedLoss):
    """Binary cross entropy on logits: a sigmoid and `BCELoss` in one, stable for any logit.

    Args:
        weight: a tensor broadcastable to the input's shape, weighting each element, or None.
        size_average: deprecated (torch's); use `reduction`.
        reduce: deprecated (torch's); use `reduction`.
        reduction: "none" (a loss per element), "mean" or "sum". Default "mean".
        pos_weight: weights of the positive term, broadcastable to the target's shape (a
            `(C,)` tensor weights each class), or None.

    Inputs:
        - **input** any shape: logits.
        - **target** the input's shape: floating, in [0, 1].

    Outputs:
        - a scalar; with reduction="none" the input's shape.

    Examples:
        >>> loss_fn = nn.BCEWithLogitsLoss(pos_weight=tg.tensor([2.0, 1.0]))
        >>> loss_fn(tg.randn(4, 2), tg.tensor([[1.0, 0.0]] * 4)).shape
        ()
    """

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None):
        super().__init__(weight, size_average, reduce, reduction)
        self.register_buffer("pos_weight", _optional_tensor(pos_weight))

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, weight=self.weight, reduction=self.reduction,
                                                  pos_weight=self.pos_weight)


class BCELoss(_WeightedLoss):
    """Binary cross entropy on probabilities: -w (t log x + (1 - t) log(1 - x)), each log
    clamped at -100 as in torch.

    Args:
        weight: a tensor broadcastable to the input's shape, weighting each element, or None.
        size_average: deprecated (torch's); use `reduction`.
        reduce: deprecated (torch's); use `reduction`.
        reduction: "none" (a loss per element), "mean" or "sum". Default "mean".

    Inputs:
        - **input** any shape: probabilities in [0, 1] (e.g. from a sigmoid).
        - **target** the input's shape: floating, in [0, 1].

    Outputs:
        - a scalar; with reduction="none" the input's shape.

    Examples:
        >>> nn.BCELoss()(tg.tensor([0.9, 0.2]), tg.tensor([1.0, 0.0])).shape
        ()
    """

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class MSELoss(_Loss):
    """Mean (or summed) squared error, (input - target) ** 2 elementwise, then reduced.

    Args:
        size_average: deprecated (torch's); use `reduction`.
        reduce: deprecated (torch's); use `reduction`.
        reduction: "none" (a loss per element), "mean" or "sum". Default "mean".

    Inputs:
        - **input** any shape.
        - **target** the input's shape (no broadcasting, unlike torch; see Differences from PyTorch).

    Outputs:
        - a scalar; with reduction="none" the input's shape.

    Examples:
        >>> float(nn.MSELoss()(tg.tensor([1.0, 2.0]), tg.tensor([1.0, 4.0])))
        2.0
    """

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)
