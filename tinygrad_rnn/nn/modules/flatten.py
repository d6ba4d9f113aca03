"""torch.nn.modules.flatten's names."""
from ..layers import Flatten
