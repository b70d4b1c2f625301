"""The command line: parse, load the config, call one entry point, map errors to exit codes 0/1/2."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swimmy.backtest.strategies import StrategySpec

from swimmy import __version__
from swimmy.config import SEVERITY_NAMES, Config, load_config, render_toml
from swimmy.errors import ConfigError, SwimmyError

TIMEFRAMES = ("M1", "M5", "M15", "M30", "H1", "H4", "D1")


def build_parser() -> argparse.ArgumentParser:
    """The whole CLI surface (SPEC §10)."""
    parser = argparse.ArgumentParser(prog="swimmy", description="The school of an FX trading system.")
    parser.add_argument("--version", action="version", version=f"swimmy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("--config", required=True, type=Path, help="TOML config file")
    run.add_argument("--exit-after", type=float, metavar="SECONDS", help="stop by itself after this many seconds")

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

    backtest = commands.add_parser("backtest", help="backtest one stored strategy in this process")
    backtest.add_argument("name", help="strategy name (see `swimmy strategies list`)")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `swimmy` script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "config":
            return _config_check(args)
        if args.command == "worker":
            return _worker(args)
        if args.command == "backtest":
            from swimmy.cli.backtest import run_offline

            return run_offline(load_config(args.config), args.name, args.date_from, args.date_to)
        if args.command == "strategies":
            return _strategies(args)
        if args.command == "tail":
            return _tail(args)
        if args.command == "status":
            from swimmy.cli.status import run_status

            return run_status(load_config(args.config).snapshots.dir, sys.stdout)
        if args.command == "wfv":
            return _control(args.config, "wfv.start", {"name": args.name}, args.timeout)
        if args.command == "oos":
            return _control(args.config, "oos.request", {"name": args.name}, args.timeout)
        if args.command == "heartbeat":
            return _control(args.config, "heartbeat.now", {}, args.timeout)
        if args.command == "data":
            return _data(args)
        if args.command == "keys":
            return _keys_generate(args.out)
        if args.command == "peer":
            return _peer(args)
    except ConfigError as exc:
        print("swimmy: invalid config:\n  " + "\n  ".join(exc.problems), file=sys.stderr)
        return exc.exit_code
    except SwimmyError as exc:
        print(f"swimmy: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover - argparse prevents it


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.exit_after is not None and args.exit_after <= 0:
        print("swimmy: --exit-after must be > 0", file=sys.stderr)
        return 2
    from swimmy.daemon.preflight import check_paths

    check_paths(cfg)
    _ensure_synthetic(cfg)
    import uvloop  # deferred: only the daemon needs it

    from swimmy.daemon.lifecycle import Daemon

    summary = uvloop.run(Daemon(cfg, exit_after_sec=args.exit_after).serve())
    for line in summary.lines:  # the daemon's last words: plain stderr, its log bridge is closed by now
        print(line, file=sys.stderr, flush=True)
    return summary.code


def _control(config: Path, command: str, command_args: dict[str, object], timeout_sec: float) -> int:
    """Send one command to the daemon of this config; print the reply; its exit code is ours."""
    import asyncio

    from swimmy.daemon.control import ControlUnavailableError, request
    from swimmy.wire.security import uses_curve
    from swimmy.wire.zmq import Wire, load_curve_keys

    cfg = load_config(config)
    endpoint = cfg.control.endpoint
    curve = uses_curve(cfg.zmq, endpoint)
    wire = Wire(cfg.zmq, load_curve_keys(cfg.zmq) if curve else None)
    try:
        reply = asyncio.run(request(wire, endpoint, command, command_args, timeout_sec=timeout_sec, curve=curve))
    except ControlUnavailableError as exc:
        print(f"swimmy: {exc}", file=sys.stderr)
        return 1
    finally:
        wire.close()
    if reply.get("ok"):
        for key, value in (reply.get("result") or {}).items():
            print(f"{key}: {value}")
        return 0
    print(f"swimmy: {command}: {reply.get('error')}", file=sys.stderr)
    code = reply.get("exit_code")
    return code if isinstance(code, int) and code in (1, 2) else 1


def _keys_generate(out: Path) -> int:
    from swimmy.wire.zmq import generate_keys

    made = generate_keys(out)
    for path in made:
        print(path)
    print(
        f"""
# daemon (server) config:
#   [zmq] curve_secret_key_file = "{out / 'server.key_secret'}"
#         curve_public_key_file = "{out / 'server.key'}"
#         curve_authorized_keys_dir = "{out / 'authorized'}"
# worker / peer (client) config:
#   [zmq] curve_secret_key_file = "{out / 'client.key_secret'}"
#         curve_public_key_file = "{out / 'client.key'}"
#         curve_server_public_key_file = "{out / 'server.key'}"
""".rstrip()
    )
    return 0


def _peer(args: argparse.Namespace) -> int:
    import asyncio

    from swimmy.cli.peer import run_peer

    cfg = load_config(args.config)
    try:
        return asyncio.run(run_peer(cfg, args.source, args.count))
    except KeyboardInterrupt:
        return 0


def untraded(cfg: Config, specs: Sequence[StrategySpec]) -> None:
    """UsageError (exit 2) naming a strategy whose symbol or timeframe the config does not trade."""
    from swimmy.errors import UsageError

    for spec in specs:
        if not cfg.school.trades(spec.symbol, spec.timeframe):
            raise UsageError(f"{spec.name()}: {spec.symbol} {spec.timeframe} is not traded by this config "
                             f"(school.symbols {list(cfg.school.symbols)}, "
                             f"school.timeframes {list(cfg.school.timeframes)}); nothing was imported")


def _strategies(args: argparse.Namespace) -> int:
    from swimmy.daemon.lockfile import LockFile
    from swimmy.errors import LockHeldError, StoreError
    from swimmy.school.catalog import import_specs, parse_import_file, render_table
    from swimmy.store import Store

    cfg = load_config(args.config)
    db = cfg.school.db_path
    if args.strategies_command == "list":
        if not db.exists():
            print(render_table([]))
            print(f"(no strategy store at {db} yet)", file=sys.stderr)
            return 0
        try:
            with Store.open_readonly(db) as store:
                rows = store.list_strategies(rank=args.rank, limit=args.limit)
        except StoreError as exc:
            print(f"swimmy: {exc}", file=sys.stderr)
            return 1
        print(render_table(rows))
        return 0
    specs = parse_import_file(args.file)
    untraded(cfg, specs)
    lock = LockFile(db, f"database {db}")
    try:
        lock.acquire()
    except LockHeldError:  # the daemon runs: it is the only writer, so it does the import
        wires = [s.to_wire(s.name()) for s in specs]
        return _control(args.config, "strategies.import", {"strategies": wires}, args.timeout)
    try:
        with Store.open(db) as store:
            outcome = import_specs(store, specs, time.time())
    finally:
        lock.release()
    for key, value in outcome.items():
        print(f"{key}: {value}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from swimmy.backtest.worker import run_worker

    cfg = load_config(args.config)
    _ensure_synthetic(cfg)  # a worker on another host makes the same bytes from the same config
    return run_worker(cfg, args.id)


def _ensure_synthetic(cfg: Config) -> None:
    """Generate the config's missing `[synthetic.SYMBOL]` universes (ConfigError, exit 2, when unwritable)."""
    if not cfg.synthetic:
        return
    from swimmy.backtest.synth import ensure_synthetic

    for path in ensure_synthetic(cfg):
        print(f"swimmy: generated synthetic universe {path}", file=sys.stderr)


def _data(args: argparse.Namespace) -> int:
    from swimmy.backtest.data import data_hash
    from swimmy.backtest.synth import generate
    from swimmy.errors import UsageError

    cfg = load_config(args.config)
    if args.data_command in ("check", "import"):
        from swimmy.cli.datatools import run_check, run_import

        if args.data_command == "check":
            return run_check(cfg, sys.stdout)
        return run_import(cfg, args.source, symbol=args.symbol, timeframe=args.timeframe, tz=args.tz,
                          fmt=args.fmt, resample_to=args.resample_to, out=sys.stdout)
    directory = cfg.school.synthetic_dir or cfg.school.data_dir
    if args.bars < 1:
        raise UsageError(f"--bars must be >= 1, got {args.bars}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    try:
        path = generate(args.kind, args.symbol, args.timeframe, args.bars, args.seed, data_dir=directory,
                        noise=args.noise)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write into {directory}: {exc.strerror or exc}") from None
    print(f"path: {path}")
    print(f"kind: {args.kind}")
    print(f"seed: {args.seed}")
    print(f"bars: {args.bars}")
    print(f"data_hash: {data_hash(directory, args.symbol, args.timeframe)}")
    if "SYNTH" not in args.symbol.upper():
        print(f"swimmy: note: {args.symbol} does not say it is synthetic; a name like SYNTH_{args.symbol} "
              "keeps anyone from taking it for a market", file=sys.stderr)
    declared = cfg.synthetic.get(args.symbol)
    if cfg.school.synthetic_dir is not None and declared is None:
        print(f"swimmy: note: {args.symbol} is not a [synthetic.{args.symbol}] of this config, which reads it "
              f"from school.data_dir ({cfg.school.data_dir}), not from {directory}", file=sys.stderr)
    elif (declared is not None and args.symbol in cfg.school.symbols
          and (declared.kind, declared.seed, declared.bars, declared.noise)
          != (args.kind, args.seed, args.bars, args.noise)):
        print(f"swimmy: note: [synthetic.{args.symbol}] of this config says kind {declared.kind}, seed "
              f"{declared.seed}, bars {declared.bars}, noise {declared.noise}: `swimmy run` regenerates it "
              "from the config", file=sys.stderr)
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from swimmy.daemon.preflight import check_paths
    from swimmy.wire.zmq import prepare_security

    cfg = load_config(args.config)
    prepare_security(cfg.zmq, cfg.control.endpoint)  # what `run` would refuse, refused here too
    check_paths(cfg)
    for warning in cfg.warnings:
        print(f"swimmy: warning: {warning}", file=sys.stderr)
    sys.stdout.write(render_toml(cfg))
    return 0


def _tail(args: argparse.Namespace) -> int:
    from swimmy.cli.tail import TailFilter, parse_since, run_tail

    if args.path is not None:
        path = args.path
    else:
        cfg = load_config(args.config or Path("config/dev.toml"))
        path = cfg.telemetry.path
    try:
        since = parse_since(args.since, time.time()) if args.since else None
    except ValueError as exc:
        print(f"swimmy: --since: {exc}", file=sys.stderr)
        return 2
    filt = TailFilter(
        event_glob=args.event,
        min_severity=args.severity,
        service=args.service,
        correlation_id=args.correlation,
        since=since,
    )
    return run_tail(Path(path), filt, follow=args.follow, lines=args.lines, as_json=args.json)
