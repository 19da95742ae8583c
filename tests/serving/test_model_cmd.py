"""`mem model promote` and `mem model list` on a real MLflow registry, with a real server running:
the champion alias moves with an audit trail and the server hot-swaps to the new champion."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from mem_cli.main import app
from mem_core import registry
from mem_core.promotion import PROMOTED_AT_TAG, PROMOTED_BY_TAG, PROMOTED_REASON_TAG
from mem_serving.api import pb

from .stack import ModelStore, Stack

runner = CliRunner()


def _list(uri: str) -> dict[str, list[str]]:
    result = runner.invoke(app, ["model", "list", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:2] == ["version", "aliases"]
    return {line.split()[0]: line.split() for line in lines[1:]}


def test_promote_by_hand_moves_the_champion_with_an_audit_tag_and_serving_swaps_to_it(
    stack: Stack, model_store: ModelStore
) -> None:
    uri, v1, v2 = stack.uri, model_store.v1, model_store.v2
    assert stack.handlers.models.version == v1
    before = _list(uri)
    assert before[v1][1] == "champion" and before[v2][1] == "challenger"
    started = datetime.now(UTC).replace(microsecond=0)
    reason = "log loss and Brier better with CIs above 0; accuracy tied"
    result = runner.invoke(app, ["model", "promote", v2, "--reason", reason, "--by", "alice", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"version {v2} is the champion (was version {v1})")
    assert registry.champion_version(uri) == v2
    tags = registry.client(uri).get_model_version(registry.MODEL_NAME, v2).tags
    assert tags[PROMOTED_BY_TAG] == "alice" and tags[PROMOTED_REASON_TAG] == reason
    promoted_at = datetime.fromisoformat(tags[PROMOTED_AT_TAG])
    assert started <= promoted_at <= datetime.now(UTC)
    assert f"by hand by alice at {tags[PROMOTED_AT_TAG]} (was {v1}): {reason}" in (
        registry.client(uri).get_model_version(registry.MODEL_NAME, v2).description
    )
    # the running server swaps to it (it polls every 0.2 s here), and says so
    deadline = time.monotonic() + 30
    while stack.handlers.models.version != v2:
        assert time.monotonic() < deadline, "the server did not pick up the promoted version"
        time.sleep(0.1)
    info = stack.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert info.champion_version == v2
    get = stack.handlers.metrics.registry.get_sample_value
    assert get("mem_model_version") == float(v2)
    # the times follow the swap: read from the registry after the version is served
    while get("mem_model_promoted_timestamp_seconds") is None:
        assert time.monotonic() < deadline, "the promoted version's times never reached the metrics"
        time.sleep(0.05)
    assert get("mem_model_promoted_timestamp_seconds") == promoted_at.timestamp()
    after = _list(uri)
    assert "champion" in after[v2][1] and after[v1][1] == "-"
    assert "alice" in after[v2] and after[v1][-1] == "-"


def test_promote_refuses_with_one_line_and_changes_nothing(mlflow_uri: str, model_store: ModelStore) -> None:
    v1 = model_store.v1
    cases = {
        ("999", "why"): f"error: {registry.MODEL_NAME} has no version 999 (see `mem model list`)",
        (v1, "why"): f"error: version {v1} is already the champion",
        (model_store.v2, "  "): "error: --reason is required: say why the gate's verdict is overridden",
        ("latest", "why"): "error: 'latest' is not a version number (see `mem model list`)",
    }
    for (version, reason), message in cases.items():
        result = runner.invoke(
            app, ["model", "promote", version, "--reason", reason, "--by", "bob", "--tracking-uri", mlflow_uri]
        )
        assert result.exit_code == 1, result.output
        assert result.output.strip() == message
    assert registry.champion_version(mlflow_uri) == v1
    assert (
        PROMOTED_BY_TAG not in registry.client(mlflow_uri).get_model_version(registry.MODEL_NAME, model_store.v2).tags
    )


def test_list_and_promote_without_a_registry_say_so(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'none.db'}"
    for args in (["model", "list"], ["model", "promote", "1", "--reason", "x"]):
        result = runner.invoke(app, [*args, "--tracking-uri", uri])
        assert result.exit_code == 1
        assert (
            result.output.strip() == f"error: no MLflow registry at {uri} (train a model first, or pass --tracking-uri)"
        )
    assert not (tmp_path / "none.db").exists()
