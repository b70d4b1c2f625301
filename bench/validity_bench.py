"""The school on data it has never seen, in the real daemon (issue 11, point 8; SPEC §5).

Per data set, one `python -m swimmy run --config CFG --exit-after SECONDS` with its embedded workers
(workers.embedded = 2) on ONE generated universe, SYNTH_X H1 (30,000 bars, swimmy/backtest/synth.py), with the
embedded default's [school] / [oos] / [wfv] / [ranks] / [workers] / [backtest] settings read from
config/dev.toml (only the universe, the paths, free ports and the audit interval differ). The figures
come from the run's telemetry, the same events swimmy/school/validity.py counts in-process:

  evaluated     the ledger's trials N (and n_eff) as last told: by the last `school.progress`, or by a later
                `strategy.ranked` / `school.audit` (they carry N too; progress comes every 10 s)
  A, S          distinct strategies that reached A or S (resp. S) in a `strategy.ranked` (at any time)
  WFV           `wfv.result` decisions validated / all results
  OOS           `oos.result` decisions pass / all verdicts
  PBO           the last `school.audit` (school.audit_interval_sec set so that one runs near the end)
  first A at    planted trend: the ledger's trials when the first strategy reached A/S (the `trials` of that
                `strategy.ranked`; the last `school.progress` before it when the event lacks the key)
  families      the families of every A/S

Data sets: Gaussian random walk, GARCH(1,1)-t random walk, planted trend at PLANTED_TREND_STRENGTH (Gaussian
noise), seeds 101, 102, 103 (fixed in advance, not tuned). Targets (issue 11):

  random walks   S == 0, A <= 1, WFV validated <= 10% of WFV results
  planted trend  an A within 5,000 trials, an S within the run, every A/S family in
                 {sma_cross, ema_cross, donchian_breakout, bollinger_breakout}

Run:  .venv/bin/python bench/validity_bench.py [--quick] [--seeds N] [--seconds S] [--kinds rw,garch,trend]
      (--quick: 60 s and one seed per kind). Default: 3 seeds x 3 kinds x 150 s, about 25 minutes.
Exit 0 always (it is a measurement); a missed target prints FAIL.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from helpers import read_all_events, write_config  # type: ignore[import-not-found]  # noqa: E402  (tests/helpers.py)

from swimmy.backtest.synth import PLANTED_TREND_STRENGTH, generate  # noqa: E402

SYMBOL = "SYNTH_X"
TIMEFRAME = "H1"
BARS = 30_000
SEEDS = (101, 102, 103)
TREND_FOLLOWERS = frozenset({"sma_cross", "ema_cross", "donchian_breakout", "bollinger_breakout"})
FIRST_A_WITHIN = 5_000
MAX_WFV_VALIDATED_SHARE = 0.10
# The embedded default's sections that decide what the school does; the rest (ports, paths) is the bench's.
KEPT_SECTIONS = ("school", "oos", "wfv", "ranks", "workers", "backtest")
DISCORD_ENV = ("SWIMMY_DISCORD_HEARTBEAT", "SWIMMY_DISCORD_ALERTS")


@dataclass(frozen=True)
class DataSet:
    label: str  # the table's name for it
    kind: str  # swimmy.backtest.synth kind
    noise: str

    @property
    def planted(self) -> bool:
        return self.kind == "planted_trend"


DATA_SETS = {
    "rw": DataSet("rw-gauss", "random_walk", "gaussian"),
    "garch": DataSet("rw-garch-t", "random_walk", "garch"),
    "trend": DataSet("trend", "planted_trend", "gaussian"),
}


@dataclass
class Result:
    data: DataSet
    seed: int
    seconds: float
    wall_sec: float = 0.0
    cpu_sec: float = 0.0  # daemon + embedded workers (user + system), from the children's rusage
    load_before: float = 0.0
    load_after: float = 0.0
    exit_code: int | None = None
    error: str = ""
    trials: int | None = None
    n_eff: float | None = None
    a_names: set[str] = field(default_factory=set)
    s_names: set[str] = field(default_factory=set)
    demoted: int = 0  # A/S later demoted (overfit walk-forward, figures no longer hold)
    wfv: Counter[str] = field(default_factory=Counter)
    oos: Counter[str] = field(default_factory=Counter)
    pbo: float | None = None
    audits: int = 0
    first_a_trials: int | None = None
    first_a_sec: float | None = None
    first_s_sec: float | None = None

    @property
    def families(self) -> Counter[str]:
        return Counter(name.split("-", 1)[0] for name in self.a_names)

    def checks(self) -> list[tuple[str, bool]]:
        """(target, met) per target of this data set's kind."""
        if self.error:
            return [("run completed", False)]
        validated, total = self.wfv.get("validated", 0), sum(self.wfv.values())
        if not self.data.planted:
            return [("S == 0", len(self.s_names) == 0),
                    ("A <= 1", len(self.a_names) <= 1),
                    ("WFV validated <= 10%", validated <= MAX_WFV_VALIDATED_SHARE * total)]
        return [(f"first A within {FIRST_A_WITHIN:,} trials",
                 self.first_a_trials is not None and self.first_a_trials <= FIRST_A_WITHIN),
                ("an S in the run", len(self.s_names) >= 1),
                ("A/S trend followers only", set(self.families) <= TREND_FOLLOWERS)]

    @property
    def passed(self) -> bool:
        return all(ok for _, ok in self.checks())


def base_sections(dev_toml: Path) -> dict[str, dict[str, Any]]:
    """The embedded default's school-deciding sections (nested tables flattened to dotted section names)."""
    with dev_toml.open("rb") as f:
        doc = tomllib.load(f)
    out: dict[str, dict[str, Any]] = {}

    def flatten(name: str, table: dict[str, Any]) -> None:
        out.setdefault(name, {})
        for key, value in table.items():
            if isinstance(value, dict):
                flatten(f"{name}.{key}", value)
            else:
                out[name][key] = value

    for section in KEPT_SECTIONS:
        if isinstance(doc.get(section), dict):
            flatten(section, doc[section])
    return out


def run_one(data: DataSet, seed: int, seconds: float, dev_toml: Path, keep: bool) -> Result:
    result = Result(data, seed, seconds)
    tmp = Path(tempfile.mkdtemp(prefix=f"validity-{data.label}-{seed}-"))
    try:
        data_dir = tmp / "data"
        # Written before the run (ensure_synthetic finds the same answer key and leaves it): the generator's
        # time (a Python GARCH loop) is not taken from the school's seconds.
        generate(data.kind, SYMBOL, TIMEFRAME, BARS, seed, data_dir=data_dir, noise=data.noise,  # type: ignore[arg-type]
                 strength=PLANTED_TREND_STRENGTH)
        sections = base_sections(dev_toml)
        school = sections.setdefault("school", {})
        school.update({
            "db_path": str(tmp / "school.db"), "data_dir": str(data_dir), "synthetic_dir": str(data_dir),
            "symbols": [SYMBOL], "timeframes": [TIMEFRAME], "breed": True,
            # audits at start-up (too few ranked: none), then two more, the last near the end of the run
            "audit_interval_sec": max(10.0, (seconds - 10.0) / 2),
        })
        sections.setdefault("workers", {}).setdefault("embedded", 2)
        sections[f"synthetic.{SYMBOL}"] = {"kind": data.kind, "seed": seed, "bars": BARS, "noise": data.noise}
        sections["telemetry"] = {"path": str(tmp / "telemetry.jsonl"), "fsync": "off", "log_level": "info",
                                 "max_bytes": 1 << 30, "backups": 4}
        sections["snapshots"] = {"dir": str(tmp / "snapshots")}
        sections["metrics"] = {"listen": ""}
        cfg = write_config(tmp, sections)
        env = {k: v for k, v in os.environ.items() if k not in DISCORD_ENV}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        result.load_before = os.getloadavg()[0]
        usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "swimmy", "run", "--config", str(cfg),
                                 "--exit-after", str(seconds)],
                                cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)  # its own group: a kill reaches its workers too
        try:
            _, err = proc.communicate(timeout=seconds + 120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate(timeout=30)
            result.error = f"did not stop within {seconds + 120:.0f} s of start; killed"
        result.wall_sec = time.monotonic() - started
        usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        result.cpu_sec = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
        result.load_after = os.getloadavg()[0]
        result.exit_code = proc.returncode
        if proc.returncode != 0 and not result.error:
            tail = err.decode(errors="replace").strip().splitlines()[-3:]
            result.error = f"exit {proc.returncode}: {' | '.join(tail)}"
        count(result, read_all_events(tmp / "telemetry.jsonl"))
    except Exception as exc:  # a measurement: report the data set as failed and go on with the next
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if keep:
            print(f"  kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def count(result: Result, events: list[dict[str, Any]]) -> None:
    """The figures of one run, from its telemetry (the events swimmy/school/validity.py counts)."""
    last_progress_trials: int | None = None
    t0: float | None = None
    for event in events:
        kind, data = event.get("event_type"), event.get("data") or {}
        ts = event.get("timestamp")
        if kind == "daemon.started" and t0 is None:
            t0 = _epoch(ts)
        if kind in ("school.progress", "strategy.ranked", "school.audit"):
            # The ledger's N and N_eff as they were when the event was made: school.progress every 10 s, and the
            # rank changes and audits in between, so the figure is the newest the run told (not up to 10 s old).
            if data.get("trials") is not None:
                result.trials = max(result.trials or 0, int(data["trials"]))
                if kind == "school.progress":
                    last_progress_trials = int(data["trials"])
            if data.get("n_eff") is not None:
                result.n_eff = float(data["n_eff"])
        if kind == "strategy.ranked":
            name, to_rank, from_rank = str(data.get("strategy")), data.get("to_rank"), data.get("from_rank")
            since = None if t0 is None or _epoch(ts) is None else _epoch(ts) - t0  # type: ignore[operator]
            if to_rank in ("A", "S"):
                if not result.a_names:
                    at = data.get("trials")
                    result.first_a_trials = int(at) if at is not None else last_progress_trials
                    result.first_a_sec = since
                result.a_names.add(name)
            if to_rank == "S":
                if not result.s_names:
                    result.first_s_sec = since
                result.s_names.add(name)
            if from_rank in ("A", "S") and to_rank not in ("A", "S"):
                result.demoted += 1
        elif kind == "wfv.result":
            result.wfv[str(data.get("decision"))] += 1
        elif kind == "oos.result":
            result.oos[str(data.get("decision") or data.get("status") or "error")] += 1
        elif kind == "school.audit":
            result.audits += 1
            result.pbo = data.get("pbo")


def _epoch(ts: Any) -> float | None:
    """The envelope's timestamp (RFC 3339, `Z`) as Unix seconds."""
    if isinstance(ts, int | float):
        return float(ts)
    if isinstance(ts, str):
        from datetime import datetime

        try:
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _fmt(value: Any, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: list[Result]) -> None:
    header = (f"{'data':11} {'seed':>4} {'evaluated':>9} {'n_eff':>7} {'A':>3} {'S':>3} {'dem':>3} {'WFV val':>8} "
              f"{'OOS pass':>9} {'PBO':>5} {'1st A@':>7} {'A s':>5} {'S s':>5} {'cpu s':>6} {'load':>9}  "
              f"{'verdict':7} families / failed targets")
    print(header)
    print("-" * len(header))
    for r in results:
        validated, total = r.wfv.get("validated", 0), sum(r.wfv.values())
        passes = r.oos.get("pass", 0)
        fams = ", ".join(f"{f} {n}" for f, n in sorted(r.families.items())) or "-"
        failed = [name for name, ok in r.checks() if not ok]
        note = fams if not failed else f"{fams}; FAIL: {'; '.join(failed)}"
        if r.error:
            note = f"{note}; {r.error}"
        print(f"{r.data.label:11} {r.seed:>4} {_fmt(r.trials, ','):>9} {_fmt(r.n_eff, '.1f'):>7} "
              f"{len(r.a_names):>3} {len(r.s_names):>3} {r.demoted:>3} {f'{validated}/{total}':>8} "
              f"{f'{passes}/{sum(r.oos.values())}':>9} {_fmt(r.pbo, '.2f'):>5} "
              f"{(_fmt(r.first_a_trials, ',') if r.data.planted else ''):>7} {_fmt(r.first_a_sec, '.0f'):>5} "
              f"{_fmt(r.first_s_sec, '.0f'):>5} {r.cpu_sec:6.0f} {f'{r.load_before:.1f}>{r.load_after:.1f}':>9}  "
              f"{'PASS' if r.passed else 'FAIL':7} {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 s and one seed per kind")
    parser.add_argument("--seeds", type=int, help=f"seeds per kind (from {SEEDS[0]}; default {len(SEEDS)})")
    parser.add_argument("--seconds", type=float, help="run length per data set (default 150; --quick 60)")
    parser.add_argument("--kinds", default="rw,garch,trend", help="which data sets: rw, garch, trend")
    parser.add_argument("--config", type=Path, default=REPO / "config" / "dev.toml",
                        help="the embedded default whose school settings are used")
    parser.add_argument("--keep", action="store_true", help="keep each run's temp dir (telemetry, store)")
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else (60.0 if args.quick else 150.0)
    n_seeds = args.seeds if args.seeds is not None else (1 if args.quick else len(SEEDS))
    seeds = [SEEDS[0] + i for i in range(max(1, n_seeds))]
    kinds = [DATA_SETS[k.strip()] for k in args.kinds.split(",") if k.strip()]
    settings = base_sections(args.config)
    school, wfv, oos = settings.get("school", {}), settings.get("wfv", {}), settings.get("oos", {})
    print(f"validity bench: the real daemon (`python -m swimmy run --exit-after {seconds:g}`), "
          f"{settings.get('workers', {}).get('embedded', 2)} embedded workers, one universe {SYMBOL} {TIMEFRAME} "
          f"of {BARS:,} bars per run; {len(kinds)} kinds x {len(seeds)} seeds {seeds}; planted strength "
          f"{PLANTED_TREND_STRENGTH}")
    print(f"settings from {args.config.relative_to(REPO) if args.config.is_relative_to(REPO) else args.config}: "
          f"school {{cycle_sec {school.get('cycle_sec')}, population_max {school.get('population_max')}, "
          f"breed_per_cycle {school.get('breed_per_cycle')}}}, wfv {wfv}, oos {oos}, "
          f"ranks {settings.get('ranks') or 'defaults'}")
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    results: list[Result] = []
    for data in kinds:
        for seed in seeds:
            print(f"  running {data.label} seed {seed} for {seconds:g} s ...", file=sys.stderr, flush=True)
            r = run_one(data, seed, seconds, args.config, args.keep)
            print(f"  ... {data.label} seed {seed}: {r.trials} trials, A {len(r.a_names)}, S {len(r.s_names)}, "
                  f"WFV {dict(r.wfv)}{', ' + r.error if r.error else ''}", file=sys.stderr, flush=True)
            results.append(r)
    print()
    print_table(results)
    print()
    print("columns: evaluated = ledger trials (last told); A/S = distinct strategies that reached "
          "A-or-S / S; dem = A/S demoted later; 1st A@ = ledger trials at the first A; A s / S s = seconds "
          "from daemon start to the first A / S; cpu s = daemon + workers CPU; load = 1-min load average before>after")
    print(f"targets: random walks S == 0, A <= 1, WFV validated <= {MAX_WFV_VALIDATED_SHARE:.0%} of results; planted "
          f"trend first A within {FIRST_A_WITHIN:,} trials, an S within {seconds:g} s, every A/S in "
          f"{{{', '.join(sorted(TREND_FOLLOWERS))}}}")
    failed = [r for r in results if not r.passed]
    by_kind = []
    for data in kinds:
        rows = [r for r in results if r.data is data]
        by_kind.append(f"{data.label} {sum(r.passed for r in rows)}/{len(rows)}")
    verdict = "PASS" if not failed else f"FAIL ({len(failed)} of {len(results)} data sets missed a target)"
    print(f"summary: {verdict}; passed per kind: {', '.join(by_kind)}; "
          f"{sum(r.wall_sec for r in results):.0f} s wall in all")


if __name__ == "__main__":
    main()
