"""torch.nn.modules.activation's names."""
from ..layers import LogSoftmax, ReLU, Sigmoid, Tanh
