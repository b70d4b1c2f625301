"""The command line: parse (cli/parser.py), load the config, call one entry point, map errors to exit codes 0/1/2."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swimmy.backtest.strategies import StrategySpec

from swimmy.cli.parser import build_parser
from swimmy.config import Config, load_config, render_toml
from swimmy.errors import ConfigError, SwimmyError


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
            from swimmy.cli.backtest import run_offline, run_offline_rank

            if (args.name is None) == (args.rank is None):
                print("swimmy: backtest: give a strategy NAME or --rank RANK (one of them)", file=sys.stderr)
                return 2
            if args.rank is not None:
                return run_offline_rank(load_config(args.config), args.rank, args.date_from, args.date_to)
            return run_offline(load_config(args.config), args.name, args.date_from, args.date_to)
        if args.command == "report":
            from swimmy.cli.report import run_report

            return run_report(load_config(args.config), args.name, args.out)
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

    console = sys.stderr.isatty() if args.console is None else args.console
    summary = uvloop.run(Daemon(cfg, exit_after_sec=args.exit_after, console=console).serve())
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
    if args.strategies_command == "export":
        from swimmy.cli.export import run_export

        return run_export(cfg, args.rank, args.out)
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
