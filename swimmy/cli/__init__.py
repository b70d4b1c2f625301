"""The `swimmy` command: argument parsing and the tools that run in the foreground (status, tail, peer,
data, backtest). Only this package prints to the terminal."""
