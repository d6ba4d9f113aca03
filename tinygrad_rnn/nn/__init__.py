"""Neural-network building blocks, named and laid out as in torch.nn."""
from . import functional, init, utils  # noqa: F401
from .layers import BatchNorm1d, Dropout, Embedding, Identity, Linear, ReLU, Sequential, Sigmoid, Tanh  # noqa: F401
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss  # noqa: F401
from .module import Module, Parameter
