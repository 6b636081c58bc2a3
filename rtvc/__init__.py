"""rtvc: a real-time streaming voice changer (DSP and neural voices, cloning, websocket control).

The runtime is numpy + numba + onnxruntime; torch is only needed for training (``rtvc/train``).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
