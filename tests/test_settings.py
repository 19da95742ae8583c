"""Settings: each package reads the environment in exactly one module, nothing writes it, and the
shared defaults are declared once (in ``mem_core.settings``) and used everywhere else by name."""

from __future__ import annotations

import ast
import base64
import os
from pathlib import Path

import pytest

from mem_core import settings as core
from mem_memory import settings as memory_settings
from mem_pipelines.settings import PipelineSettings, dagster_home, mlflow_ui_url, parse_symbols
from mem_serving.settings import ClientSettings, ServingSettings

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mem_core", "mem_memory", "mem_pipelines", "mem_serving", "mem_cli")
#: The one module per package allowed to read the environment (mem_cli has none: it asks these).
ENV_READERS = {
    "mem_core/settings.py",
    "mem_memory/settings.py",
    "mem_pipelines/settings.py",
    "mem_serving/settings.py",
}
_ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
_WRITERS = {"setdefault", "update", "pop", "popitem", "clear", "__setitem__", "__delitem__"}


def _sources() -> dict[str, str]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if "/_gen/" not in rel:
                out[rel] = path.read_text()
    return out


def _is_os(node: ast.AST, names: set[str]) -> bool:
    """``node`` is ``os.<one of names>``."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr in names
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _is_os_env(node: ast.AST) -> bool:
    return _is_os(node, {"environ", "environb"})


def env_uses(source: str) -> tuple[list[int], list[int]]:
    """(lines that touch the process environment, lines among them that write it)."""
    touches, writes = [], []
    for node in ast.walk(ast.parse(source)):
        if _is_os(node, _ENV_NAMES):
            assert isinstance(node, ast.Attribute)
            touches.append(node.lineno)
            if node.attr in ("putenv", "unsetenv"):
                writes.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and any(a.name in _ENV_NAMES for a in node.names):
            touches.append(node.lineno)
        elif isinstance(node, ast.Subscript) and _is_os_env(node.value) and isinstance(node.ctx, (ast.Store, ast.Del)):
            writes.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _is_os_env(node.func.value):
            if node.func.attr in _WRITERS:
                writes.append(node.lineno)
    return touches, writes


def test_the_detector_sees_reads_and_writes() -> None:
    src = (
        "import os\nfrom os import getenv\n"
        "a = os.environ.get('X')\nb = os.getenv('Y')\n"
        "os.environ['Z'] = '1'\nos.environ.setdefault('W', '2')\ndel os.environ['Z']\nos.putenv('V', '3')\n"
        "child = {**os.environ, 'K': 'v'}\n"
    )
    touches, writes = env_uses(src)
    assert sorted(set(touches)) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert sorted(writes) == [5, 6, 7, 8]
    assert env_uses("import os\nos.path.join('a', 'b')\nenv = {'environ': 1}\n") == ([], [])


def test_the_environment_is_read_only_in_the_settings_modules() -> None:
    readers = {rel: touches for rel, src in _sources().items() if (touches := env_uses(src)[0])}
    assert set(readers) <= ENV_READERS, {rel: lines for rel, lines in readers.items() if rel not in ENV_READERS}
    assert set(readers) == ENV_READERS  # each package's reader is where this test says it is


def test_no_code_writes_the_process_environment() -> None:
    writers = {rel: writes for rel, src in _sources().items() if (writes := env_uses(src)[1])}
    assert writers == {}


def _literal_defaults(source: str, names: set[str]) -> list[tuple[int, str]]:
    """Fields and parameters called one of ``names`` whose default is a literal, not a name."""
    found: list[tuple[int, str]] = []

    def check(name: str, default: ast.expr | None, line: int) -> None:
        if default is None or name not in names:
            return
        if isinstance(default, ast.Call) and getattr(default.func, "attr", None) == "Option" and default.args:
            default = default.args[0]  # typer.Option(<default>, ...)
        literal = isinstance(default, (ast.Constant, ast.List, ast.Tuple))
        if literal and not (isinstance(default, ast.Constant) and default.value is None):
            found.append((line, name))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            check(node.target.id, node.value, node.lineno)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            for arg, default in zip(positional[len(positional) - len(args.defaults) :], args.defaults):
                check(arg.arg, default, node.lineno)
            for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults):
                check(arg.arg, kw_default, node.lineno)
    return found


def test_shared_defaults_are_declared_once_and_used_by_name() -> None:
    names = {"fee_bps", "slippage_bps", "server", "symbols"}
    found = {rel: hits for rel, src in _sources().items() if (hits := _literal_defaults(src, names))}
    assert found == {}
    assert _literal_defaults(
        "def f(fee_bps: float = 10.0, symbols=None): ...\nclass C:\n    server: str = 'h:1'\n", names
    ) == [
        (1, "fee_bps"),
        (3, "server"),
    ]
    from mem_cli.main_job import MainConfig
    from mem_pipelines.replay.assets import ReplayReportConfig
    from mem_pipelines.replay.runner import ReplayConfig
    from mem_pipelines.replay.simulator import Costs

    assert (Costs().fee_bps, Costs().slippage_bps) == (core.DEFAULT_FEE_BPS, core.DEFAULT_SLIPPAGE_BPS) == (10.0, 5.0)
    replay = ReplayConfig(symbols=("BTCUSDT",), start="2025-06-01", end="2025-06-02")
    assert (replay.fee_bps, replay.slippage_bps, replay.server) == (10.0, 5.0, "127.0.0.1:50051")
    assert (MainConfig().fee_bps, MainConfig().symbols) == (10.0, ("BTCUSDT", "ETHUSDT"))
    assert ReplayReportConfig().symbols == ["BTCUSDT", "ETHUSDT"] and ReplayReportConfig().fee_bps == 10.0
    assert ServingSettings().port == 50051 and ServingSettings().metrics_port == 5001


def test_pipeline_settings_from_the_environment() -> None:
    default = PipelineSettings.from_env({})
    assert default.symbols == core.DEFAULT_SYMBOLS == ("BTCUSDT", "ETHUSDT")
    assert (default.max_gap_ratio, default.deployment, default.questdb_password_from_env) == (0.01, "local", False)
    custom = PipelineSettings.from_env(
        {
            "MEM_SYMBOLS": "solusdt, BTCUSDT,,solusdt",
            "MEM_MAX_GAP_RATIO": "0.05",
            "MEM_QUESTDB_HOST": "db",
            "MEM_QUESTDB_PASSWORD": "p",
        }
    )
    assert custom.symbols == ("SOLUSDT", "BTCUSDT")
    assert (custom.max_gap_ratio, custom.deployment, custom.questdb_password_from_env) == (0.05, "external", True)
    assert parse_symbols(["ethusdt ", "ETHUSDT", "btcusdt"]) == ("ETHUSDT", "BTCUSDT")
    with pytest.raises(ValueError):
        PipelineSettings(symbols=(" ", ""))
    assert dagster_home(Path("/x"), {}) == Path("/x")
    assert dagster_home(Path("/x"), {"DAGSTER_HOME": "/y"}) == Path("/y")


def test_core_paths_memory_and_mlflow(tmp_path: Path) -> None:
    env = {"MEM_HOME": str(tmp_path)}
    assert core.memory_db_path(env=env) == tmp_path.resolve() / ".mem" / "memory" / "memory.db"
    assert core.memory_db_path(env={**env, "MEM_MEMORY_DB": "/m/x.db"}) == Path("/m/x.db")
    assert core.memory_db_path("/explicit.db", env={"MEM_MEMORY_DB": "/m/x.db"}) == Path("/explicit.db")
    assert core.tracking_uri(env) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert core.tracking_uri({"MLFLOW_TRACKING_URI": "http://mlflow:5000"}) == "http://mlflow:5000"
    local = core.LocalQuestDBSettings.from_env({"MEM_QUESTDB_VERSION": "1.2.3", "MEM_JAVA": "/opt/java"})
    assert local.jar == core.PROJECT_ROOT / ".cache" / "questdb-1.2.3.jar" and local.java == "/opt/java"
    assert core.LocalQuestDBSettings.from_env({"MEM_QUESTDB_JAR": "/q.jar"}).jar == Path("/q.jar")


def test_serving_settings_take_the_shared_memory_path_and_mlflow_store(tmp_path: Path) -> None:
    env = {"MEM_HOME": str(tmp_path)}
    s = ServingSettings.from_env(env)
    assert s.memory_db == core.memory_db_path(env=env)
    assert s.tracking_uri == core.tracking_uri(env)
    assert ServingSettings.from_env({**env, "MEM_MEMORY_DB": "/m.db"}, memory_db=Path("/o.db")).memory_db == Path(
        "/o.db"
    )
    client = ClientSettings.from_env({"MEM_SERVING_TOKEN": "s3cret-token", "MEM_SERVING_TLS_CERT": "/c.pem"})
    assert (client.token, client.root_cert) == ("s3cret-token", Path("/c.pem"))
    assert "s3cret" not in repr(client)
    assert ClientSettings.from_env({}) == ClientSettings()


def test_the_memory_writer_child_never_gets_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(memory_settings.KEY_ENV, base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.setenv("MEM_SERVING_TOKEN", "s3cret")
    child = memory_settings.writer_child_environment("/pkg")
    assert memory_settings.KEY_ENV not in child
    assert "MEM_SERVING_TOKEN" not in child and set(child) <= set(memory_settings.CHILD_ENV)
    assert child["PYTHONPATH"] == os.pathsep.join(["/pkg", "/elsewhere"])
    assert memory_settings.KEY_ENV in os.environ  # a copy: the parent's environment is untouched


def test_an_instance_outside_the_project_gets_the_projects_dagster_settings(tmp_path) -> None:
    """A MEM_HOME elsewhere: its Dagster instance queues runs with the project's limits, keeps its
    storage inside that folder and shows no telemetry prompt; an existing dagster.yaml is kept."""
    import dagster as dg

    from mem_pipelines.settings import ensure_instance_config

    home = tmp_path / "home with space"
    written = ensure_instance_config(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        assert coordinator.get_run_queue_config().max_concurrent_runs == 2
        assert not instance.telemetry_enabled
        assert Path(instance.storage_directory()).is_relative_to(home / ".mem" / "dagster")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")
    ensure_instance_config(mine)
    assert (mine / "dagster.yaml").read_text() == "telemetry:\n  enabled: true\n"
    assert written == home / "dagster.yaml"


def test_mlflow_links_follow_the_configured_ui(tmp_path: Path) -> None:
    """The Dagster metadata's MLflow links: MEM_MLFLOW_UI_URL, an http tracking server, the URL the
    last ``scripts/ui.sh mlflow`` of MEM_HOME recorded (its PORT), else port 5000."""
    home = {"MEM_HOME": str(tmp_path)}
    local = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert mlflow_ui_url(local, home) == "http://127.0.0.1:5000"
    (tmp_path / ".mem").mkdir()
    (tmp_path / ".mem" / "mlflow_ui_url").write_text("http://127.0.0.1:5055\n")
    assert mlflow_ui_url(local, home) == "http://127.0.0.1:5055"
    assert mlflow_ui_url("http://mlflow:8080/", home) == "http://mlflow:8080"
    assert mlflow_ui_url(local, {**home, "MEM_MLFLOW_UI_URL": "https://ml.example/"}) == "https://ml.example"
