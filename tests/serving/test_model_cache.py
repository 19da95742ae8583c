"""The local copy of champion versions (``mem_serving.model_cache``): a restart loads its champion
from disk without downloading it, the registry still decides which version that is (read without
MLflow for a SQLite registry), a promotion is picked up as before, and a damaged copy is fetched
again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import mlflow
import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from mem_core import registry
from mem_core.estimators import UnknownEstimator
from mem_core.estimators.hist_gb import HistGB
from mem_core.feature_sets import REGIME_V1
from mem_serving.model_cache import META, ModelCache, champion_version
from mem_serving.model_provider import ModelProvider

from .helpers import mem_serve_process, promote
from .stack import ModelStore


class CountingLoads:
    """The registry's loader, counting the versions it is asked for."""

    def __init__(self) -> None:
        self.versions: list[str] = []

    def __call__(self, version: str, uri: str | None) -> registry.LoadedModel:
        self.versions.append(version)
        return registry.load_version(version, uri)


def _provider(uri: str, cache: ModelCache, loads: CountingLoads, poll_s: float = 0.0) -> ModelProvider:
    return ModelProvider(uri, poll_s, load_fn=loads, cache=cache).start()


def _wait_until(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_a_restart_serves_the_champion_from_the_cache_without_downloading_it(
    mlflow_uri: str, model_store: ModelStore, tmp_path: Path
) -> None:
    cache = ModelCache(tmp_path / "cache", mlflow_uri)
    first_loads = CountingLoads()
    first = _provider(mlflow_uri, cache, first_loads)
    assert first.version == model_store.v1 and first_loads.versions == [model_store.v1]
    first.stop()
    assert (cache.folder / model_store.v1 / META).is_file()

    again = CountingLoads()
    second = _provider(mlflow_uri, cache, again)
    try:
        assert second.version == model_store.v1 and again.versions == []  # nothing downloaded
        served = second.model
        assert served is not None and served.run is not None  # GetModelInfo needs no registry read
        assert served.run.params.get("estimator") == "seed_gbc"
        row = np.zeros(len(served.feature_names))
        reference = first.model
        assert reference is not None and served.predict_one(row) == reference.predict_one(row)
    finally:
        second.stop()


def test_a_champion_promoted_while_the_server_was_down_is_the_one_a_restart_serves(
    mlflow_uri: str, model_store: ModelStore, tmp_path: Path
) -> None:
    cache = ModelCache(tmp_path / "cache", mlflow_uri)
    _provider(mlflow_uri, cache, CountingLoads()).stop()
    promote(mlflow_uri, model_store.v2)
    loads = CountingLoads()
    swaps: list[str | None] = []
    provider = ModelProvider(mlflow_uri, 0.0, load_fn=loads, cache=cache)
    provider.subscribe(lambda m: swaps.append(m and m.version))
    provider.start()
    try:
        assert provider.version == model_store.v2 and swaps == [None, model_store.v2]
        assert loads.versions == [model_store.v2] and (cache.folder / model_store.v2 / META).is_file()
    finally:
        provider.stop()


def test_a_promotion_is_picked_up_and_kept_for_the_next_start(
    mlflow_uri: str, model_store: ModelStore, tmp_path: Path
) -> None:
    cache = ModelCache(tmp_path / "cache", mlflow_uri)
    provider = _provider(mlflow_uri, cache, CountingLoads(), poll_s=0.1)
    try:
        promote(mlflow_uri, model_store.v2)
        _wait_until(lambda: provider.version == model_store.v2)
    finally:
        provider.stop()
    loads = CountingLoads()
    restarted = _provider(mlflow_uri, cache, loads)
    try:
        assert restarted.version == model_store.v2 and loads.versions == []
    finally:
        restarted.stop()


def test_a_damaged_copy_is_fetched_again_from_the_registry(
    mlflow_uri: str, model_store: ModelStore, tmp_path: Path
) -> None:
    cache = ModelCache(tmp_path / "cache", mlflow_uri)
    _provider(mlflow_uri, cache, CountingLoads()).stop()
    (cache.folder / model_store.v1 / META).write_text("{not json")
    loads = CountingLoads()
    provider = _provider(mlflow_uri, cache, loads)
    try:
        assert provider.version == model_store.v1 and loads.versions == [model_store.v1]
        assert json.loads((cache.folder / model_store.v1 / META).read_text())["version"] == model_store.v1
    finally:
        provider.stop()


def test_the_champion_is_read_from_a_sqlite_registry_as_mlflow_reads_it(
    mlflow_uri: str, model_store: ModelStore, tmp_path: Path
) -> None:
    assert champion_version(mlflow_uri) == registry.champion_version(mlflow_uri) == model_store.v1
    promote(mlflow_uri, model_store.v2)
    assert champion_version(mlflow_uri) == model_store.v2
    registry.client(mlflow_uri).delete_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION)
    assert champion_version(mlflow_uri) is None and registry.champion_version(mlflow_uri) is None
    assert champion_version(f"sqlite:///{tmp_path / 'none.db'}") is None  # no registry yet: MLflow's answer


def test_two_registries_never_share_a_copy(tmp_path: Path) -> None:
    a = ModelCache(tmp_path, "sqlite:////srv/a/mlflow.db")
    b = ModelCache(tmp_path, "sqlite:////srv/b/mlflow.db")
    same = ModelCache(tmp_path, "https://user:secret@mlflow.example/")
    assert a.folder != b.folder and same.folder == ModelCache(tmp_path, "https://mlflow.example/").folder


def test_hist_gb_compiled_path_is_rebuilt_from_its_kept_arrays(tmp_path: Path) -> None:
    """The arrays kept beside a hist_gb model give the same compiled predictor, without skl2onnx."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, len(REGIME_V1.names)))
    y = (X[:, 0] + 0.5 * X[:, 3] + rng.normal(scale=0.5, size=3000) > 0).astype(int)
    model = HistGB(HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y), REGIME_V1)
    state = model.one_row_state()
    assert state is not None
    np.savez(tmp_path / "s.npz", **state)
    with np.load(tmp_path / "s.npz") as kept:
        rebuilt = model.compile_one_row_from({k: kept[k] for k in kept.files})
    assert rebuilt is not None
    rows = rng.normal(size=(200, X.shape[1]))
    rows[::7, 2] = np.nan  # missing values go the learned way
    np.testing.assert_allclose([rebuilt(r) for r in rows], model.estimator.predict_proba(rows)[:, 1], rtol=0, atol=1e-9)


def _hist_gb_entry(tmp_path: Path) -> tuple[ModelCache, HistGB, np.ndarray]:
    """A small hist_gb version fetched into a cache (as a server's first start does)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, len(REGIME_V1.names)))
    y = (X[:, 0] - 0.5 * X[:, 2] + rng.normal(scale=0.5, size=3000) > 0).astype(int)
    model = HistGB(HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y), REGIME_V1)
    ranges = {n: (float(X[:, i].min()), float(X[:, i].max())) for i, n in enumerate(REGIME_V1.names)}
    cache = ModelCache(tmp_path / "cache", "sqlite:////nowhere/mlflow.db")
    fetched = cache.fetch("7", lambda version, uri: registry.LoadedModel(version, model, ranges))
    assert fetched.compiled and fetched.loaded is not None
    return cache, model, rng.normal(size=(50, X.shape[1]))


def test_a_cached_hist_gb_is_served_from_its_arrays_without_scikit_learn_skops_or_mlflow(tmp_path: Path) -> None:
    cache, model, rows = _hist_gb_entry(tmp_path)
    np.save(tmp_path / "rows.npy", rows)
    script = f"""
import sys, json, numpy as np
from pathlib import Path
from mem_serving.model_cache import ModelCache
served = ModelCache(Path({str(tmp_path / "cache")!r}), "sqlite:////nowhere/mlflow.db").load("7")
rows = np.load({str(tmp_path / "rows.npy")!r})
print(json.dumps({{
    "compiled": served.compiled, "estimator_loaded": served.loaded is not None,
    "p": [served.predict_one(r) for r in rows],
    "imported": sorted(m for m in ("sklearn", "skops", "mlflow", "skl2onnx") if m in sys.modules),
}}))
"""
    out = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
    assert out["compiled"] and not out["estimator_loaded"] and out["imported"] == []
    np.testing.assert_allclose(out["p"], model.predict_proba(rows), rtol=0, atol=1e-9)


def test_arrays_that_no_longer_give_the_kept_answers_are_not_served_alone(tmp_path: Path) -> None:
    cache, model, rows = _hist_gb_entry(tmp_path)
    meta = json.loads((cache.folder / "7" / META).read_text())
    meta["probe"] = [p + 0.01 for p in meta["probe"]]  # the arrays disagree with what predict_proba said
    (cache.folder / "7" / META).write_text(json.dumps(meta))
    served = cache.load("7")
    assert served is not None and served.loaded is not None  # the estimator, checked against itself again
    np.testing.assert_allclose([served.predict_one(r) for r in rows], model.predict_proba(rows), rtol=0, atol=1e-9)


def test_mem_serve_downloads_the_champion_once_and_starts_from_the_cache_after(
    mlflow_uri: str, model_store: ModelStore, tmp_path: Path
) -> None:
    env = {**os.environ, "MEM_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": mlflow_uri, "MEM_QUESTDB_PG_PORT": "1"}
    for key in ("MEM_SERVING_TOKEN", "MEM_SERVING_TOKEN_FILE", "MEM_SERVING_MODEL_CACHE"):
        env.pop(key, None)
    logs = []
    for _ in range(2):
        proc = mem_serve_process(env, tmp_path / "m.db", metrics_port=-1)
        try:
            ready = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
            assert ready["model_version"] == model_store.v1
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        logs.append(proc.stderr.read())  # type: ignore[union-attr]
    assert "downloading champion version" in logs[0]
    assert "downloading champion version" not in logs[1] and f"serving champion version {model_store.v1}" in logs[1]
    assert "started in" in logs[1]
    assert (tmp_path / ".mem" / "cache" / "models").is_dir()


def _registered_hist_gb(uri: str) -> tuple[str, HistGB]:
    """A small hist_gb registered as training registers it (``registry.log_model_version``)."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(2000, len(REGIME_V1.names)))
    y = (X[:, 1] + 0.5 * X[:, 4] + rng.normal(scale=0.5, size=2000) > 0).astype(int)
    model = HistGB(HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(X, y), REGIME_V1)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=registry.ensure_experiment(uri)):
        return registry.log_model_version(model, X_train=X, uri=uri), model


def _logged_arrays(uri: str, version: str) -> Path:
    mv = registry.client(uri).get_model_version(registry.MODEL_NAME, version)
    artifacts = registry.client(uri).get_run(mv.run_id).info.artifact_uri
    path = Path(urlsplit(artifacts).path) / registry.ONE_ROW_ARTIFACT
    assert path.is_file()
    return path


def test_a_first_start_builds_a_hist_gb_champion_from_its_logged_arrays_without_scikit_learn_or_skops(
    mlflow_uri: str, tmp_path: Path
) -> None:
    version, model = _registered_hist_gb(mlflow_uri)
    _logged_arrays(mlflow_uri, version)
    rows = np.random.default_rng(3).normal(size=(50, len(REGIME_V1.names)))
    rows[::5, 3] = np.nan
    np.save(tmp_path / "rows.npy", rows)
    script = f"""
import sys, json, numpy as np
from pathlib import Path
from mem_serving.model_cache import ModelCache
served = ModelCache(Path({str(tmp_path / "cache")!r}), {mlflow_uri!r}).fetch({version!r})
rows = np.load({str(tmp_path / "rows.npy")!r})
print(json.dumps({{
    "compiled": served.compiled, "estimator_loaded": served.loaded is not None, "run": served.run is not None,
    "ranges": len(served.feature_ranges), "p": [served.predict_one(r) for r in rows],
    "imported": sorted(m for m in ("sklearn", "skops") if m in sys.modules),
}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["compiled"] and not out["estimator_loaded"] and out["imported"] == []
    assert out["run"] and out["ranges"] == len(REGIME_V1.names)
    np.testing.assert_allclose(out["p"], model.predict_proba(rows), rtol=0, atol=1e-9)
    entry = ModelCache(tmp_path / "cache", mlflow_uri).folder / version
    assert (entry / META).is_file() and not (entry / "model.skops").exists()  # nothing to read it back with
    again = ModelCache(tmp_path / "cache", mlflow_uri).load(version)  # the next start: from the entry
    assert again is not None and again.compiled and again.loaded is None


def test_logged_arrays_that_do_not_give_the_models_answers_are_not_served(mlflow_uri: str, tmp_path: Path) -> None:
    version, model = _registered_hist_gb(mlflow_uri)
    path = _logged_arrays(mlflow_uri, version)
    with np.load(path) as kept:
        arrays = {k: kept[k] for k in kept.files}
    arrays[registry.PROBE] = arrays[registry.PROBE] + 0.01
    np.savez(path, **arrays)
    served = ModelCache(tmp_path / "cache", mlflow_uri).fetch(version)
    assert served.loaded is not None and served.compiled  # the estimator, checked against itself
    rows = np.random.default_rng(4).normal(size=(20, len(REGIME_V1.names)))
    np.testing.assert_allclose([served.predict_one(r) for r in rows], model.predict_proba(rows), rtol=0, atol=1e-9)


def test_a_version_without_logged_arrays_is_loaded_whole(
    mlflow_uri: str, model_store: ModelStore, tmp_path: Path
) -> None:
    assert registry.read_version(model_store.v1, mlflow_uri) is None
    served = ModelCache(tmp_path / "cache", mlflow_uri).fetch(model_store.v1)
    assert served.loaded is not None and served.version == model_store.v1


def test_a_version_of_an_unknown_model_type_is_refused_before_its_arrays_are_read(
    mlflow_uri: str, tmp_path: Path
) -> None:
    version, _ = _registered_hist_gb(mlflow_uri)
    registry.client(mlflow_uri).set_model_version_tag(registry.MODEL_NAME, version, "estimator", "xgb_someday")
    with pytest.raises(UnknownEstimator, match="xgb_someday"):
        registry.read_version(version, mlflow_uri)
