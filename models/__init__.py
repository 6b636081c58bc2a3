"""Shipped voices (installed as ``rtvc._models``): ``NAME.onnx`` + ``NAME.json`` manifest + ``NAME.preview.wav``."""
