"""Networks in the NTK parameterization."""

from widessl.models.activations import ACTIVATIONS, Activation, get_activation
from widessl.models.deep import DeepNet
from widessl.models.two_layer import TwoLayerNet

__all__ = ["ACTIVATIONS", "Activation", "DeepNet", "TwoLayerNet", "get_activation"]
