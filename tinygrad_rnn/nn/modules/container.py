"""torch.nn.modules.container's names."""
from ..layers import ModuleDict, ModuleList, Sequential
