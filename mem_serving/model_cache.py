"""The local copy of champion versions, so a restart loads its champion from disk without a
download or MLflow (docs/serving.md, "Start-up"). An entry,
``<root>/<hash of the registry URI without credentials>/<model name>/<version>/``, is written to a
temporary folder and renamed into place; one that cannot be read is removed and fetched again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from mem_core import feature_sets, registry
from mem_core.model import load_estimator_file, probe_rows, save_estimator_file
from mem_serving.fast_predict import RunRecord, ServingModel

log = logging.getLogger(__name__)

#: Versions kept per model (the champion and the ones before it, for a quick roll-back).
KEEP = 3
META, MODEL, ONE_ROW = "meta.json", "model.skops", "one_row.npz"
#: The layout of an entry; an entry of another layout is fetched again (raise it when the
#: meaning of a kept file changes, e.g. ``one_row_state``'s arrays).
FORMAT = 2


def read_run(run_id: str, tracking_uri: str) -> RunRecord:
    """The run's params, tags and latest metrics from the registry's tracking store."""
    run = registry.client(tracking_uri).get_run(run_id)
    return RunRecord(dict(run.data.params), dict(run.data.tags), {k: float(v) for k, v in run.data.metrics.items()})


def champion_version(uri: str) -> str | None:
    """The champion's version, as ``registry.champion_version``. A ``sqlite:///`` registry is read
    with one query of MLflow's alias table (read-only; milliseconds, where importing MLflow takes
    seconds of CPU); anything else, or a query that fails (another schema), asks MLflow."""
    path = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") and "?" not in uri else None
    if path is not None and path.is_file():
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)) as db:
                row = db.execute(
                    "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                    (registry.MODEL_NAME, registry.CHAMPION),
                ).fetchone()
            return None if row is None else str(row[0])
        except sqlite3.Error as exc:
            log.debug("reading the alias from %s directly failed (%s); asking MLflow", path, exc)
    return registry.champion_version(uri)


def public_location(uri: str) -> str:
    """``uri`` without user name or password (a path is returned as it is)."""
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])) if "@" in parts.netloc else uri


class ModelCache:
    def __init__(self, root: Path, tracking_uri: str) -> None:
        key = hashlib.sha256(public_location(tracking_uri).encode()).hexdigest()[:16]
        self.folder = Path(root) / key / registry.MODEL_NAME
        self.tracking_uri = tracking_uri

    def prune(self, serving: str) -> None:
        """Remove the entries beyond the newest ``KEEP`` (never ``serving``'s, the one served now)."""
        try:
            entries = sorted(
                (p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                key=lambda p: p.stat().st_mtime,
                reverse=True,
            )
            for old in entries[KEEP:]:
                if old.name != serving:
                    shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            log.warning("cannot prune the model cache %s: %s", self.folder, exc)

    def load(self, version: str) -> ServingModel | None:
        """The cached entry of ``version`` ready to serve, or None (not cached, or unreadable: then
        removed)."""
        entry = self.folder / version
        if not (entry / META).is_file():
            return None
        try:
            return _read(entry)
        except Exception as exc:  # a damaged or foreign entry: the registry has the truth
            log.warning("model cache entry %s cannot be read (%s); fetching it again", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def fetch(self, version: str, load_fn: Callable[[str, str], registry.LoadedModel] | None = None) -> ServingModel:
        """``version`` from the registry, kept here for the next start: rebuilt from the one-row
        arrays logged with it when it has them (no estimator loaded), else loaded whole."""
        log.info("downloading champion version %s from the registry", version)
        record = registry.read_version(version, self.tracking_uri) if load_fn is None else None
        model, state, probe = None, None, None
        if record is not None:
            state, probe = record.one_row_state, record.probe_expected
            kept = ("version", "estimator", "feature_set", "feature_ranges", "run_id")
            run = self._run(record.run_id, version)
            model = ServingModel.from_state(state, probe, run=run, **{k: getattr(record, k) for k in kept})
        if model is None:  # no arrays logged, or they do not reproduce the model's answers
            loaded = (load_fn or registry.load_version)(version, self.tracking_uri)
            state = loaded.model.one_row_state()
            model = ServingModel.prepare(loaded, state, self._run(loaded.run_id, version))
            if state is not None and model.compiled:
                probe = loaded.model.predict_proba(probe_rows(model.feature_names, model.feature_ranges))
        try:
            self._save(model, state, probe)
        except Exception as exc:  # serving goes on; the next start downloads again
            log.warning("cannot keep version %s in the model cache %s: %s", version, self.folder, exc)
        return model

    def _run(self, run_id: str | None, version: str) -> RunRecord | None:
        try:
            return read_run(run_id, self.tracking_uri) if run_id else None
        except Exception as exc:  # GetModelInfo reads it later and says why it cannot
            log.warning("cannot read run %s of version %s: %s", run_id, version, exc)
            return None

    def _save(self, model: ServingModel, state: Mapping[str, np.ndarray] | None, probe: np.ndarray | None) -> None:
        """The entry: meta, the one-row arrays, and the estimator (skops) when it was loaded."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = Path(tempfile.mkdtemp(prefix=f".{model.version}-", dir=self.folder))
        try:
            trusted = [] if model.loaded is None else save_estimator_file(model.loaded.model.estimator, tmp / MODEL)
            if state is not None:
                np.savez(tmp / ONE_ROW, **cast(dict[str, Any], state))
            run = model.run
            meta = {
                "format": FORMAT,
                "version": model.version,
                "run_id": model.run_id,
                "estimator": model.estimator,
                "feature_set": model.feature_set.name,
                "feature_ranges": {k: list(v) for k, v in model.feature_ranges.items()},
                "trusted_types": trusted,
                "run": None if run is None else {"params": run.params, "tags": run.tags, "metrics": run.metrics},
                "probe": None if probe is None else [float(p) for p in probe],
            }
            (tmp / META).write_text(json.dumps(meta))
            target = self.folder / model.version
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _read(entry: Path) -> ServingModel:
    meta = json.loads((entry / META).read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"written in format {meta.get('format')}, this code reads {FORMAT}")
    raw: Any = meta.get("run")
    fields: dict[str, Any] = dict(
        version=str(meta["version"]),
        estimator=meta["estimator"],
        feature_set=feature_sets.get(meta["feature_set"]),
        feature_ranges={k: (float(v[0]), float(v[1])) for k, v in meta["feature_ranges"].items()},
        run=None if raw is None else RunRecord(dict(raw["params"]), dict(raw["tags"]), dict(raw["metrics"])),
        run_id=meta["run_id"] or "",
    )
    state = None
    if (entry / ONE_ROW).is_file():
        with np.load(entry / ONE_ROW) as arrays:
            state = {name: arrays[name] for name in arrays.files}
    if state is not None and meta.get("probe") is not None:
        lean = ServingModel.from_state(state, np.array(meta["probe"], dtype=np.float64), **fields)
        if lean is not None:
            return lean
    from mem_core import estimators

    estimator = load_estimator_file(entry / MODEL, list(meta["trusted_types"]))
    model = estimators.get(fields["estimator"])(estimator, fields["feature_set"])
    loaded = registry.LoadedModel(fields["version"], model, fields["feature_ranges"], fields["run_id"] or None)
    return ServingModel.prepare(loaded, state, fields["run"])
