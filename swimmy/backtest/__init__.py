"""Backtests: market data, strategies, the vectorised engine, metrics, and the worker process."""
