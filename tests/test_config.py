"""The config contract (SPEC §11): defaults, key-path errors, path resolution, reload plans."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import REPO, run_cli

from swimmy.config import (
    Config,
    config_from_mapping,
    instrument_costs,
    load_config,
    plan_reload,
    render_toml,
    webhook_urls,
)
from swimmy.errors import ConfigError

SAMPLE_DATA = f'[school]\ndata_dir = "{REPO / "data" / "eurusd-h1-2017"}"\n'


class TestDefaults:
    def test_empty_file_is_valid_and_spec_defaults_apply(self, tmp_path: Path) -> None:
        """Every key has a default: an empty file loads, with the numbers SPEC.md gives."""
        path = tmp_path / "empty.toml"
        path.write_text("")
        cfg = load_config(path)
        assert cfg.telemetry.max_bytes == 32 * 1024 * 1024
        assert cfg.telemetry.backups == 8
        assert cfg.telemetry.queue_size == 100_000
        assert cfg.telemetry.max_event_bytes == 64 * 1024
        assert cfg.telemetry.fsync == "interval"
        assert cfg.telemetry.fsync_interval_ms == 1000
        assert cfg.telemetry.drain_timeout_sec == 10
        assert cfg.heartbeat.interval_sec == 10
        assert cfg.heartbeat.peer_timeout_sec == 60
        assert cfg.zmq.pub_endpoint == "tcp://127.0.0.1:5556"
        assert cfg.zmq.pull_endpoint == "tcp://127.0.0.1:5555"
        assert cfg.zmq.backtest_endpoint == "tcp://127.0.0.1:5580"
        assert cfg.zmq.result_endpoint is None and cfg.warnings == ()  # deprecated: no longer used
        assert cfg.workers.queue_depth == 2
        assert cfg.backtest.worker_timeout_sec == 5 and cfg.backtest.max_attempts == 3
        assert cfg.zmq.max_message_bytes == 1024 * 1024
        assert cfg.control.endpoint == "tcp://127.0.0.1:5590"
        assert cfg.workers.embedded == 2
        assert cfg.school.cycle_sec == 10
        assert cfg.school.population_max == 2000
        assert cfg.backtest.timeout_sec == 120
        assert cfg.oos.window_days is None and cfg.oos.min_window_days == 90 and cfg.oos.window_fraction == 0.25
        assert (cfg.oos.min_trades, cfg.oos.min_sharpe, cfg.oos.min_psr, cfg.oos.max_looks) == (20, 0.35, 0.90, 500)
        assert (cfg.wfv.folds, cfg.wfv.mode, cfg.wfv.affects_rank) == (5, "rolling", True)
        assert (cfg.wfv.min_psr, cfg.wfv.min_wfe, cfg.wfv.min_profitable_folds) == (0.95, 0.5, 0.6)
        assert (cfg.school.audit_interval_sec, cfg.school.audit_strategies) == (3600, 50)
        assert cfg.oos.request_interval_sec == 600
        assert cfg.oos.min_sharpe == 0.35
        assert (cfg.wfv.enabled, cfg.wfv.interval_sec, cfg.wfv.max_pending, cfg.wfv.max_per_run) == (True, 3600, 2, 1)
        assert (cfg.wfv.split_ratio, cfg.wfv.pending_timeout_sec, cfg.wfv.affects_rank) == (0.2, 1800, True)
        assert (cfg.ranks.B.sharpe, cfg.ranks.B.min_trades) == (0.15, 20)
        assert (cfg.ranks.A.sharpe, cfg.ranks.A.profit_factor, cfg.ranks.A.dsr) == (0.45, 1.20, 0.95)
        assert (cfg.ranks.B.win_rate, cfg.ranks.A.win_rate, cfg.ranks.S.win_rate) == (0, 0, 0)  # no win-rate gate
        assert (cfg.ranks.S.max_drawdown, cfg.ranks.S.sharpe) == (0.15, 0.0)
        assert cfg.discord.heartbeat_webhook_env == "SWIMMY_DISCORD_HEARTBEAT"
        assert cfg.discord.heartbeat_interval_sec == 3600
        assert cfg.snapshots.interval_sec == 60
        assert cfg.metrics.listen == "127.0.0.1:9464"
        assert (cfg.debug.enabled, cfg.debug.burst_on_start) == (False, 0)

    def test_relative_paths_resolve_against_the_config_directory(self, tmp_path: Path) -> None:
        """A relative path means relative to the config file, not to the working directory."""
        (tmp_path / "etc").mkdir()
        path = tmp_path / "etc" / "c.toml"
        path.write_text('[telemetry]\npath = "../logs/t.jsonl"\n[school]\ndb_path = "/abs/school.db"\n')
        cfg = load_config(path)
        assert cfg.telemetry.path == tmp_path / "logs" / "t.jsonl"
        assert cfg.school.db_path == Path("/abs/school.db")
        assert cfg.snapshots.dir == tmp_path / "etc" / "var" / "snapshots"

    def test_partial_rank_table_keeps_that_ranks_defaults(self) -> None:
        """[ranks.S] with one key overrides only that key of S's criteria."""
        cfg = config_from_mapping({"ranks": {"A": {"sharpe": 1.0}}}, base_dir=Path("/"))
        assert cfg.ranks.A.sharpe == 1.0
        assert cfg.ranks.A.dsr == 0.95
        assert cfg.ranks.A.profit_factor == 1.20

    def test_sec_and_ms_keys_take_integers_or_floats(self) -> None:
        """`_sec` and `_ms` keys accept both integers and floats."""
        cfg = config_from_mapping({"heartbeat": {"interval_sec": 2}, "telemetry": {"fsync_interval_ms": 2.5}},
                                  base_dir=Path("/"))
        assert cfg.heartbeat.interval_sec == 2.0
        assert cfg.telemetry.fsync_interval_ms == 2.5


class TestErrors:
    @pytest.mark.parametrize(
        ("doc", "message"),
        [
            ({"wfv": {"max_pending": -1}}, "wfv.max_pending: must be >= 0, got -1"),
            ({"wfv": {"bogus": 1}}, "wfv.bogus: unknown key"),
            ({"nonsense": {}}, "nonsense: unknown key"),
            ({"heartbeat": {"interval_sec": "ten"}}, "heartbeat.interval_sec: must be a number, got a string"),
            ({"heartbeat": {"interval_sec": True}}, "heartbeat.interval_sec: must be a number, got a boolean"),
            ({"workers": {"embedded": 1.5}}, "workers.embedded: must be an integer, got a float"),
            ({"telemetry": {"fsync": "sometimes"}}, "telemetry.fsync: must be one of 'off', 'interval', 'always'"),
            ({"telemetry": {"queue_size": 0}}, "telemetry.queue_size: must be >= 1, got 0"),
            ({"wfv": {"split_ratio": 1.0}}, "wfv.split_ratio: must be < 1, got 1.0"),
            ({"ranks": {"A": {"win_rate": 2}}}, "ranks.A.win_rate: must be <= 1, got 2.0"),
            ({"zmq": {"pub_endpoint": "127.0.0.1:5556"}}, "zmq.pub_endpoint: must start with one of tcp://"),
            ({"metrics": {"listen": "localhost"}}, "metrics.listen: must be HOST:PORT or empty to disable"),
            ({"school": {"symbols": "EURUSD"}}, "school.symbols: must be an array of strings"),
            ({"telemetry": 3}, "telemetry: must be a table"),
            ({"discord": {"mute": ["peer.slient"]}}, "discord.mute: unknown notification kind 'peer.slient'"),
            ({"school": {"cycle_sec": float("nan")}}, "school.cycle_sec: must be a finite number, got a float (nan)"),
            ({"heartbeat": {"interval_sec": float("inf")}}, "heartbeat.interval_sec: must be a finite number"),
            ({"oos": {"min_sharpe": float("-inf")}}, "oos.min_sharpe: must be a finite number"),
            ({"ranks": {"S": {"sharpe": float("nan")}}}, "ranks.S.sharpe: must be a finite number"),
            ({"school": {"symbols": []}}, "school.symbols: must name at least one symbol"),
            ({"school": {"symbols": ["EURUSD", "EURUSD"]}}, "school.symbols: 'EURUSD' is listed twice"),
            ({"school": {"symbols": ["EUR/USD"]}}, "school.symbols: a symbol is letters, digits"),
        ],
    )
    def test_each_kind_of_error_names_its_key_path(self, doc: dict[str, object], message: str) -> None:
        """Unknown keys, wrong types and out-of-range values are errors naming the key path."""
        with pytest.raises(ConfigError) as info:
            config_from_mapping(doc, base_dir=Path("/"))
        assert any(p.startswith(message) for p in info.value.problems), info.value.problems

    def test_all_problems_are_reported_at_once(self) -> None:
        """An operator fixes a config in one pass: every bad key is listed."""
        with pytest.raises(ConfigError) as info:
            config_from_mapping({"wfv": {"max_pending": -1}, "heartbeat": {"bogus": 1}}, base_dir=Path("/"))
        assert len(info.value.problems) == 2

    def test_invalid_toml_names_the_file(self, tmp_path: Path) -> None:
        """A syntax error says which file and where."""
        path = tmp_path / "bad.toml"
        path.write_text("[telemetry\n")
        with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
            load_config(path)


class TestCli:
    @pytest.mark.parametrize(
        ("body", "key"),
        [
            ("[wfv]\nmax_pending = -1\n", "wfv.max_pending: must be >= 0, got -1"),
            ("[telemetry]\nunknown_key = 1\n", "telemetry.unknown_key: unknown key"),
            ('[heartbeat]\ninterval_sec = "x"\n', "heartbeat.interval_sec: must be a number"),
        ],
    )
    @pytest.mark.parametrize("command", [["run"], ["config", "check"]])
    def test_bad_config_exits_2_naming_the_key_before_touching_anything(
        self, tmp_path: Path, body: str, key: str, command: list[str]
    ) -> None:
        """`swimmy run` and `config check` exit 2, name the key, and create no file or directory."""
        path = tmp_path / "bad.toml"
        path.write_text(body + '[school]\ndb_path = "state/school.db"\n')
        result = run_cli(*command, "--config", str(path), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert key in result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]

    @pytest.mark.parametrize("command", [["run"], ["config", "check"]])
    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ("[school]\ncycle_sec = nan\n", "school.cycle_sec: must be a finite number, got a float (nan)"),
            ("[heartbeat]\ninterval_sec = inf\n", "heartbeat.interval_sec: must be a finite number"),
            ("[school]\nsymbols = []\n", "school.symbols: must name at least one symbol"),
            ('[school]\ndata_dir = "missing"\n', "school.data_dir: {tmp}/missing does not exist"),
            ('[school]\ndata_dir = "empty"\n', "school.symbols: no configured universe is usable"),
            ('[school]\ndata_dir = "bad"\n', "  {tmp}/bad/EURUSD_H1.csv:3: bad number in high: 'x'"),
            ('[telemetry]\npath = "logs"\n', "telemetry.path: {tmp}/logs is a directory"),
            ('[telemetry]\npath = "afile/telemetry.jsonl"\n', "telemetry.path: {tmp}/afile (in "),
            ('[school]\ndb_path = "logs"\n', "school.db_path: {tmp}/logs is a directory"),
        ],
    )
    def test_configs_that_would_run_and_do_nothing_exit_2_before_anything_starts(
        self, tmp_path: Path, body: str, message: str, command: list[str]
    ) -> None:
        """NaN/inf, no symbols, no data, a directory for a file: exit 2 naming the key, nothing created."""
        (tmp_path / "logs").mkdir()
        (tmp_path / "empty").mkdir()
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "EURUSD_H1.csv").write_text("timestamp,open,high,low,close\n"
                                                       "1483308000,1.1,1.2,1.0,1.1\n1483311600,1.1,x,1.0,1.1\n")
        (tmp_path / "afile").write_text("")
        path = tmp_path / "bad.toml"
        data = "" if "data_dir" in body else SAMPLE_DATA
        body = body.replace("[school]\n", data) if data and "[school]" in body else data + body
        path.write_text(body + '[snapshots]\ndir = "state/snap"\n')
        before = sorted(p.name for p in tmp_path.iterdir())
        result = run_cli(*command, "--config", str(path), cwd=tmp_path, timeout=20)
        assert result.returncode == 2, result.stderr
        assert message.format(tmp=tmp_path) in result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing may be created"

    @pytest.mark.parametrize("command", [["run"], ["config", "check"]])
    def test_a_fifo_as_the_config_exits_2_instead_of_hanging(self, tmp_path: Path, command: list[str]) -> None:
        """Reading a FIFO would block for ever: only a regular file is a config."""
        fifo = tmp_path / "swimmy.toml"
        os.mkfifo(fifo)
        result = run_cli(*command, "--config", str(fifo), timeout=20)
        assert result.returncode == 2
        assert "swimmy.toml: cannot read config: not a regular file" in result.stderr

    def test_missing_config_file_exits_2(self, tmp_path: Path) -> None:
        """A config path that does not exist is a config error."""
        result = run_cli("run", "--config", str(tmp_path / "nope.toml"))
        assert result.returncode == 2
        assert "nope.toml: cannot read config" in result.stderr

    def test_config_check_prints_effective_config_with_secrets_redacted(self, tmp_path: Path) -> None:
        """`config check` prints every section; the webhook URL from the environment never appears."""
        path = tmp_path / "c.toml"
        path.write_text(f"[heartbeat]\ninterval_sec = 3\n{SAMPLE_DATA}")
        secret = "https://discord.example/api/webhooks/123/SECRET-TOKEN"
        result = run_cli("config", "check", "--config", str(path), env={"SWIMMY_DISCORD_HEARTBEAT": secret})
        assert result.returncode == 0, result.stderr
        assert "[heartbeat]\ninterval_sec = 3.0" in result.stdout
        assert "[ranks.S]" in result.stdout
        assert "discord heartbeat webhook: set (redacted)" in result.stdout
        assert "SECRET-TOKEN" not in result.stdout + result.stderr

    def test_the_old_oos_window_days_is_read_as_min_window_days(self) -> None:
        cfg = config_from_mapping({"oos": {"window_days": 30}}, base_dir=Path("/"))
        assert cfg.oos.holdout_min_days == 30 and "oos.window_days is deprecated" in cfg.warnings[0]

    def test_timeframes_is_a_list_and_every_symbol_trades_on_each(self) -> None:
        """school.timeframes: the school's universes are the product of symbols and timeframes."""
        cfg = config_from_mapping({"school": {"symbols": ["EURUSD", "USDJPY"], "timeframes": ["H1", "M5"]}},
                                  base_dir=Path("/"))
        assert cfg.school.universes() == [("EURUSD", "H1"), ("EURUSD", "M5"), ("USDJPY", "H1"), ("USDJPY", "M5")]
        assert cfg.school.trades("USDJPY", "M5") and not cfg.school.trades("USDJPY", "D1")
        assert cfg.warnings == ()

    def test_the_old_timeframe_key_is_read_as_a_one_item_list_with_a_warning(self, tmp_path: Path) -> None:
        """school.timeframe = "M15" still works: timeframes = ["M15"], and a rendered config loads back alike."""
        cfg = config_from_mapping({"school": {"timeframe": "M15"}}, base_dir=Path("/"))
        assert cfg.school.timeframes == ("M15",)
        assert any("school.timeframe is deprecated" in w for w in cfg.warnings)
        path = tmp_path / "c.toml"
        path.write_text(render_toml(cfg))
        assert load_config(path).school.timeframes == ("M15",)

    @pytest.mark.parametrize(
        ("school", "message"),
        [
            ({"timeframe": "H1", "timeframes": ["M5"]}, "school.timeframe: deprecated and contradicts"),
            ({"timeframes": []}, "school.timeframes: must name at least one timeframe"),
            ({"timeframes": ["H2"]}, "school.timeframes: unknown timeframe 'H2'"),
            ({"timeframes": ["H1", "H1"]}, "school.timeframes: 'H1' is listed twice"),
        ],
    )
    def test_bad_timeframes_name_the_key(self, school: dict[str, object], message: str) -> None:
        with pytest.raises(ConfigError) as info:
            config_from_mapping({"school": school}, base_dir=Path("/"))
        assert any(p.startswith(message) for p in info.value.problems), info.value.problems

    def test_instruments_set_pip_and_costs_per_symbol(self) -> None:
        """[instruments.XAUUSD]: its own pip and costs; other symbols keep the defaults (JPY: 0.01)."""
        cfg = config_from_mapping({
            "backtest": {"spread_pips": 0.8, "slippage_pips": 0.2},
            "instruments": {"XAUUSD": {"pip": 0.1, "spread_pips": 3.0}, "USDJPY": {"slippage_pips": 0.5}},
        }, base_dir=Path("/"))
        assert instrument_costs(cfg, "XAUUSD") == {"spread_pips": 3.0, "slippage_pips": 0.2, "pip": 0.1}
        assert instrument_costs(cfg, "USDJPY") == {"spread_pips": 0.8, "slippage_pips": 0.5, "pip": 0.01}
        assert instrument_costs(cfg, "EURUSD") == {"spread_pips": 0.8, "slippage_pips": 0.2, "pip": 0.0001}
        with pytest.raises(ConfigError, match=r"instruments\.XAUUSD\.pip: must be > 0"):
            config_from_mapping({"instruments": {"XAUUSD": {"pip": 0}}}, base_dir=Path("/"))

    def test_synthetic_tables_name_their_universe(self) -> None:
        cfg = config_from_mapping({"synthetic": {"SYNTH_X": {"kind": "planted_trend", "seed": 3}}}, base_dir=Path("/"))
        assert cfg.synthetic["SYNTH_X"].kind == "planted_trend" and cfg.synthetic["SYNTH_X"].bars == 30_000
        with pytest.raises(ConfigError, match=r"synthetic.SYNTH_X.kind: must be one of"):
            config_from_mapping({"synthetic": {"SYNTH_X": {"kind": "lucky"}}}, base_dir=Path("/"))

    def test_the_old_result_endpoint_still_loads_with_a_deprecation_warning(self, tmp_path: Path) -> None:
        """zmq.result_endpoint is no longer used (SPEC §4): an old config loads, and `config check` says so."""
        path = tmp_path / "c.toml"
        path.write_text(f'[zmq]\nresult_endpoint = "tcp://127.0.0.1:5581"\n{SAMPLE_DATA}')
        result = run_cli("config", "check", "--config", str(path))
        assert result.returncode == 0, result.stderr
        assert "warning: zmq.result_endpoint is deprecated and no longer used" in result.stderr

    def test_shipped_configs_are_valid(self) -> None:
        """config/dev.toml and config/prod.toml load; prod uses absolute paths only."""
        repo = Path(__file__).resolve().parent.parent
        load_config(repo / "config" / "dev.toml")
        prod = (repo / "config" / "prod.toml").read_text()
        cfg = config_from_mapping(__import__("tomllib").loads(prod), base_dir=Path("/nonexistent-base"))
        for p in (cfg.telemetry.path, cfg.school.db_path, cfg.school.data_dir, cfg.snapshots.dir):
            assert not str(p).startswith("/nonexistent-base"), p


class TestSecretsAndReload:
    def test_webhooks_fall_back_to_each_other_and_never_print(self) -> None:
        """Each webhook falls back to the other; the Secret's repr and str are '***'."""
        cfg = Config().discord
        heartbeat, alerts = webhook_urls(cfg, {"SWIMMY_DISCORD_ALERTS": "https://x/secret"})
        assert heartbeat is not None and alerts is not None
        assert heartbeat.reveal() == alerts.reveal() == "https://x/secret"
        assert repr(heartbeat) == str(alerts) == "'***'"
        assert "secret" not in f"{heartbeat} {alerts!r}"
        assert webhook_urls(cfg, {}) == (None, None)

    def test_reload_applies_reloadable_keys_and_lists_the_rest(self) -> None:
        """A SIGHUP takes heartbeat/wfv/log_level from the new file but keeps telemetry.path."""
        old = config_from_mapping({}, base_dir=Path("/a"))
        new = config_from_mapping(
            {"heartbeat": {"interval_sec": 3}, "wfv": {"max_pending": 5}, "telemetry": {"log_level": "debug",
             "path": "/elsewhere.jsonl"}, "snapshots": {"interval_sec": 5, "dir": "/other"}},
            base_dir=Path("/a"),
        )
        plan = plan_reload(old, new)
        assert plan.config.heartbeat.interval_sec == 3
        assert plan.config.wfv.max_pending == 5
        assert plan.config.telemetry.log_level == "debug"
        assert plan.config.snapshots.interval_sec == 5
        assert plan.config.telemetry.path == old.telemetry.path
        assert plan.config.snapshots.dir == old.snapshots.dir
        assert plan.changed == ["heartbeat.interval_sec", "snapshots.interval_sec", "telemetry.log_level",
                                "wfv.max_pending"]
        assert plan.needs_restart == ["snapshots.dir", "telemetry.path"]

    def test_webhook_env_names_need_a_restart(self) -> None:
        """The webhook URLs are read from the environment at start: renaming their variables needs a restart."""
        old = config_from_mapping({}, base_dir=Path("/a"))
        new = config_from_mapping({"discord": {"alerts_webhook_env": "OTHER", "mute": ["peer.silent"]}},
                                  base_dir=Path("/a"))
        plan = plan_reload(old, new)
        assert plan.changed == ["discord.mute"]
        assert plan.needs_restart == ["discord.alerts_webhook_env"]
        assert plan.config.discord.alerts_webhook_env == "SWIMMY_DISCORD_ALERTS"
        assert plan.config.discord.mute == ("peer.silent",)

    def test_render_is_valid_toml_that_loads_back_to_the_same_config(self, tmp_path: Path) -> None:
        """The printed effective config is itself a valid config with the same hash."""
        cfg = config_from_mapping({"wfv": {"max_pending": 4}}, base_dir=tmp_path)
        again = tmp_path / "again.toml"
        again.write_text(render_toml(cfg))
        assert load_config(again).config_hash == cfg.config_hash


class TestCheckSecurity:
    def test_config_check_refuses_what_run_would_refuse(self, tmp_path: Path) -> None:
        """A reachable endpoint without keys fails `config check` with exit 2, as `run` would."""
        path = tmp_path / "c.toml"
        path.write_text('[zmq]\npull_endpoint = "tcp://0.0.0.0:5555"\n')
        result = run_cli("config", "check", "--config", str(path))
        assert result.returncode == 2
        assert "zmq.pull_endpoint: tcp://0.0.0.0:5555 needs CurveZMQ" in result.stderr

    def test_missing_key_file_names_its_key(self, tmp_path: Path) -> None:
        """curve = "always" with a key file that does not exist: exit 2 naming the key."""
        path = tmp_path / "c.toml"
        path.write_text('[zmq]\ncurve = "always"\ncurve_secret_key_file = "nope.key_secret"\n'
                        'curve_public_key_file = "nope.key"\n')
        result = run_cli("config", "check", "--config", str(path))
        assert result.returncode == 2
        assert "zmq.curve_secret_key_file: cannot load key file" in result.stderr
