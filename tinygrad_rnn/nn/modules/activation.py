"""torch.nn.modules.activation's names."""
from ..layers import GELU, LogSoftmax, ReLU, Sigmoid, Tanh
