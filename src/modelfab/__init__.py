"""modelfab: a model factory from foundation-model teacher to small served student."""

__version__ = "0.2.0"
