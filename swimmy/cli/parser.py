"""The `swimmy` command line's surface (SPEC §10): every command, subcommand and option, with its help.

Parsing only: swimmy/cli/main.py calls `build_parser().parse_args`, dispatches and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from swimmy import __version__
from swimmy.config import SEVERITY_NAMES

TIMEFRAMES = ("M1", "M5", "M15", "M30", "H1", "H4", "D1")


def build_parser() -> argparse.ArgumentParser:
    """The whole CLI surface (SPEC §10)."""
    parser = argparse.ArgumentParser(prog="swimmy", description="The school of an FX trading system.")
    parser.add_argument("--version", action="version", version=f"swimmy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("--config", required=True, type=Path, help="TOML config file")
    run.add_argument("--exit-after", type=float, metavar="SECONDS", help="stop by itself after this many seconds")
    console = run.add_mutually_exclusive_group()
    console.add_argument("--console", dest="console", action="store_true", default=None,
                         help="tell the school's story on the terminal (default: when stderr is a terminal)")
    console.add_argument("--no-console", dest="console", action="store_false",
                         help="lifecycle lines only, as under systemd")

    status = commands.add_parser("status", help="the daemon's latest snapshots; exit 1 when it looks unhealthy")
    status.add_argument("--config", required=True, type=Path)

    wfv = commands.add_parser("wfv", help="walk-forward validation")
    wfv_commands = wfv.add_subparsers(dest="wfv_command", required=True, metavar="SUBCOMMAND")
    wfv_start = wfv_commands.add_parser("start", help="start a WFV run now, bypassing every guard")
    wfv_start.add_argument("name")
    wfv_start.add_argument("--config", required=True, type=Path)
    wfv_start.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS")

    oos = commands.add_parser("oos", help="out-of-sample backtests")
    oos_commands = oos.add_subparsers(dest="oos_command", required=True, metavar="SUBCOMMAND")
    oos_request = oos_commands.add_parser("request", help="request an OOS backtest now, whatever the throttle")
    oos_request.add_argument("name")
    oos_request.add_argument("--config", required=True, type=Path)
    oos_request.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS")

    worker = commands.add_parser("worker", help="run a backtest worker")
    worker.add_argument("--config", required=True, type=Path, help="TOML config file (endpoints, data, costs)")
    worker.add_argument("--id", help="worker id (default <host>-<pid>); heartbeats say worker-<id>")

    backtest = commands.add_parser("backtest", help="backtest stored strategies in this process")
    backtest.add_argument("name", nargs="?", help="strategy name (see `swimmy strategies list`)")
    backtest.add_argument("--rank", choices=("incubator", "B", "A", "S", "graveyard"),
                          help="instead of NAME: every strategy of this rank, one line each")
    backtest.add_argument("--config", required=True, type=Path)
    backtest.add_argument("--from", dest="date_from", metavar="DATE", help="YYYY-MM-DD or RFC 3339 (inclusive)")
    backtest.add_argument("--to", dest="date_to", metavar="DATE", help="YYYY-MM-DD or RFC 3339 (exclusive)")

    strategies = commands.add_parser("strategies", help="the strategy population")
    strategies_commands = strategies.add_subparsers(dest="strategies_command", required=True, metavar="SUBCOMMAND")
    listing = strategies_commands.add_parser("list", help="print the population as a table")
    listing.add_argument("--config", required=True, type=Path)
    listing.add_argument("--rank", choices=("incubator", "B", "A", "S", "graveyard"))
    listing.add_argument("--limit", type=int, help="at most this many rows")
    importing = strategies_commands.add_parser("import", help="add hand-written strategies from a TOML file")
    importing.add_argument("file", type=Path)
    importing.add_argument("--config", required=True, type=Path)
    importing.add_argument("--timeout", type=float, default=5.0, help="control channel timeout when the daemon runs")

    exporting = strategies_commands.add_parser(
        "export", help="write strategies as TOML that `strategies import` reads back")
    exporting.add_argument("--config", required=True, type=Path)
    exporting.add_argument("--rank", choices=("incubator", "B", "A", "S", "graveyard"))
    exporting.add_argument("--out", type=Path, help="write here (default: standard output)")

    report = commands.add_parser("report", help="one strategy's report as a self-contained HTML file")
    report.add_argument("name", help="strategy name (see `swimmy strategies list`)")
    report.add_argument("--config", required=True, type=Path)
    report.add_argument("--out", type=Path, help="the HTML file to write (default: NAME.html here)")

    config = commands.add_parser("config", help="config tools")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    check = config_commands.add_parser("check", help="validate a config and print it, secrets redacted")
    check.add_argument("--config", required=True, type=Path)

    tail = commands.add_parser("tail", help="read the telemetry stream, readably")
    source = tail.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="read telemetry.path of this config")
    source.add_argument("--path", type=Path, help="read this JSONL file")
    tail.add_argument("-f", "--follow", action="store_true", help="keep following, across rotations")
    tail.add_argument("-n", "--lines", type=int, default=10, help="last N matching events (default 10)")
    tail.add_argument("--event", metavar="GLOB", help="event_type glob, e.g. 'wfv.*'")
    tail.add_argument("--severity", choices=SEVERITY_NAMES, metavar="MIN", help="minimum severity")
    tail.add_argument("--service", metavar="NAME")
    tail.add_argument("--correlation", metavar="ID")
    tail.add_argument("--since", metavar="AGE", help="10m, 2h, 1d or an RFC 3339 time; reads the backups too")
    tail.add_argument("--json", action="store_true", help="print the raw JSON lines")

    heartbeat = commands.add_parser("heartbeat", help="heartbeat tools")
    heartbeat_commands = heartbeat.add_subparsers(dest="heartbeat_command", required=True, metavar="SUBCOMMAND")
    now = heartbeat_commands.add_parser("now", help="ask the running daemon to send a heartbeat now")
    now.add_argument("--config", required=True, type=Path)
    now.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="give up after (default 5)")

    data = commands.add_parser("data", help="market data tools")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    data_generate = data_commands.add_parser(
        "generate", help="write a synthetic universe (a random walk or a planted trend) into the data dir"
    )
    data_generate.add_argument("--kind", required=True, choices=("random_walk", "planted_trend"))
    data_generate.add_argument("--symbol", required=True, help="a plainly synthetic name, e.g. SYNTH_RW")
    data_generate.add_argument("--timeframe", required=True, choices=TIMEFRAMES, metavar="TF",
                               help=" ".join(TIMEFRAMES))
    data_generate.add_argument("--config", required=True, type=Path,
                               help="writes into its school.synthetic_dir, else its school.data_dir")
    data_generate.add_argument("--bars", type=int, default=30_000, help="number of bars (default 30000)")
    data_generate.add_argument("--seed", type=int, default=0, help="random seed (default 0): same seed, same bytes")
    data_generate.add_argument("--noise", choices=("gaussian", "garch"), default="gaussian",
                               help="Gaussian iid shocks (default) or GARCH(1,1) with Student-t shocks")

    data_check = data_commands.add_parser(
        "check", help="report each configured universe: bars, range, gaps, duplicates, spacing, OHLC "
                      "(exit 1: a problem)")
    data_check.add_argument("--config", required=True, type=Path)
    data_import = data_commands.add_parser(
        "import", help="convert a trader's file (CSV/TSV, MT4, MT5, Dukascopy, HistData, Parquet) to the canonical one")
    data_import.add_argument("source", type=Path, metavar="SRC")
    data_import.add_argument("--symbol", required=True)
    data_import.add_argument("--timeframe", required=True, choices=TIMEFRAMES, metavar="TF",
                             help="the file's own timeframe: " + " ".join(TIMEFRAMES))
    data_import.add_argument("--config", required=True, type=Path, help="writes into the symbol's data directory")
    data_import.add_argument("--tz", help="the file's time zone: an IANA name (Europe/Athens), UTC or +02:00 "
                             "(default: UTC; HistData: EST without DST)")
    data_import.add_argument("--format", dest="fmt", metavar="F",
                             help="generic, mt4, mt5, dukascopy, histdata or parquet (default: detected)")
    data_import.add_argument("--resample-to", choices=TIMEFRAMES, metavar="TF",
                             help="write coarser bars: first open, max high, min low, last close, summed volume")

    keys = commands.add_parser("keys", help="CurveZMQ keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="SUBCOMMAND")
    generate = keys_commands.add_parser("generate", help="make a server and a client keypair")
    generate.add_argument("--out", required=True, type=Path, help="directory for the key files")

    peer = commands.add_parser("peer", help="developer tool: subscribe to the heartbeats and ack each one")
    peer.add_argument("--config", required=True, type=Path)
    peer.add_argument("--source", default="peer-cli", help="our name in the acks (default peer-cli)")
    peer.add_argument("--count", type=int, help="stop after this many heartbeats")
    return parser
