"""ssl-ser: speech emotion recognition with self-supervised speech models.

Importing this package is cheap: it does not import torch or transformers.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
