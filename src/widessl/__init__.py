"""widessl: the kernel regime of self-supervised learning (Barlow Twins) made runnable.

Subpackages: data, models, losses, ntk, kernel, train, experiments, cli.
"""

from widessl.errors import ConfigError, DataError, DivergenceError, WidesslError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "DivergenceError", "WidesslError", "__version__"]
