"""The champion poll keeps serving what it has when the registry cannot be read or has lost its
champion, and says why (``ModelProvider.refresh`` over a real registered champion)."""

from __future__ import annotations

from mem_serving.model_cache import champion_version
from mem_serving.model_provider import ModelProvider

from .stack import ModelStore


def test_an_unreadable_registry_or_a_lost_champion_keeps_the_served_model(
    mlflow_uri: str, model_store: ModelStore
) -> None:
    answers: list[object] = []

    def version(uri: str | None) -> str | None:
        answer = answers.pop(0) if answers else champion_version(uri)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    provider = ModelProvider(mlflow_uri, 0, version_fn=version)
    assert provider.refresh() is True and provider.version == model_store.v1 and provider.last_error is None

    answers.append(OSError("database is locked"))
    assert provider.refresh() is False and provider.version == model_store.v1
    assert provider.last_error == f"cannot read the champion version from {mlflow_uri}: database is locked"

    answers.append(None)
    assert provider.refresh() is False and provider.version == model_store.v1
    assert provider.last_error == f"the registry has no champion any more; still serving version {model_store.v1}"
