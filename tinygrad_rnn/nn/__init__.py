"""Neural-network building blocks, named and laid out as in torch.nn."""
from .module import Module, Parameter
