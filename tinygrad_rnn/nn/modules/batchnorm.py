"""torch.nn.modules.batchnorm's names."""
from ..layers import BatchNorm1d
