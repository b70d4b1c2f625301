"""swimmy: the school of an FX trading system."""

__version__ = "0.1.0"
