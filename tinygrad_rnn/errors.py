"""The package's exception types; each message names the op and the shapes, dtypes or devices."""


class TinyGradRNNError(Exception):
    """Base of every error tinygrad_rnn raises on purpose."""


# The builtin bases: Python's convention (ValueError, TypeError) and torch's (RuntimeError, which
# torch raises for nearly every bad shape, dtype or value inside an op), so that both
# `except ValueError` and ported `except RuntimeError` code catch them.
class ShapeError(TinyGradRNNError, ValueError, RuntimeError):
    """Shapes that an op cannot combine."""


class DTypeError(TinyGradRNNError, TypeError, RuntimeError):
    """A dtype or type an op cannot take (a float index array, a list where a Tensor is needed)."""


class InvalidValueError(TinyGradRNNError, ValueError, RuntimeError):
    """Values an op cannot work with (a negative or NaN probability, a distribution summing to 0)."""


class OutOfRangeError(TinyGradRNNError, IndexError):
    """A dim or an index outside its tensor's range. An IndexError, as torch's: iteration and
    unpacking (`h, c = t`) stop at the first IndexError, and `except IndexError` keeps working."""


class DeviceError(TinyGradRNNError, RuntimeError):
    """An unknown or unavailable device, or tensors on different devices in one op."""


class GraphError(TinyGradRNNError, RuntimeError):
    """Misuse of the autograd graph: backward through a freed graph, on a tensor without grad, ..."""


class AnomalyError(TinyGradRNNError, FloatingPointError):
    """A NaN or Inf produced while anomaly detection is on."""
