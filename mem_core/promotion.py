"""Moving the champion by hand, with an audit trail, and listing the registered versions.

``promote`` moves alias ``champion`` of ``mem-reversal`` to a version a reviewer chose (for
example one the accuracy gate kept out although its log loss and Brier are better), after
writing on that version who did it, when and why (tags ``champion.promoted_by``,
``champion.promoted_at``, ``champion.reason``, ``champion.previous``) and a line in its
description. The tags come first, the alias last, so a server that picks up the new champion
(``mem serve`` polls every few seconds and hot-swaps) already reads its promotion time. A
version serving cannot load (a feature set or model type this code does not know) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mem_core import estimators, feature_sets, registry

PROMOTED_BY_TAG = "champion.promoted_by"
PROMOTED_AT_TAG = "champion.promoted_at"
PROMOTED_REASON_TAG = "champion.reason"
PREVIOUS_TAG = "champion.previous"


class PromotionError(ValueError):
    """The promotion was refused; the message says why in one line. Nothing was changed."""


@dataclass(frozen=True)
class VersionRow:
    """One registered version as ``mem model list`` shows it."""

    version: str
    aliases: tuple[str, ...]
    created: datetime
    gate: str  # the gate's outcome (promoted | rejected | error), "" when it never ran
    log_loss_gain_mnat: str  # holdout gain over the constant base rate, as the gate tagged it
    promoted_by: str
    promoted_at: str
    reason: str


def _existing_store(uri: str) -> None:
    """A SQLite registry that does not exist is an error, not a new empty store."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = Path(uri[len("sqlite:///") :])
        if not path.is_file():
            raise PromotionError(f"no MLflow registry at {uri} (train a model first, or pass --tracking-uri)")


def list_versions(uri: str | None = None, model_name: str = registry.MODEL_NAME) -> list[VersionRow]:
    """Every version of ``model_name``, newest first."""
    uri = uri or registry.tracking_uri()
    _existing_store(uri)
    c = registry.client(uri)
    versions = c.search_model_versions(f"name = '{model_name}'")
    aliases: dict[str, list[str]] = {}
    if versions:  # search results carry no aliases; the registered model maps them
        for alias, number in (getattr(c.get_registered_model(model_name), "aliases", None) or {}).items():
            aliases.setdefault(str(number), []).append(alias)
    rows = []
    for mv in versions:
        tags = mv.tags or {}
        rows.append(
            VersionRow(
                version=str(mv.version),
                aliases=tuple(sorted(aliases.get(str(mv.version), ()))),
                created=datetime.fromtimestamp((mv.creation_timestamp or 0) / 1000.0, UTC),
                gate=tags.get("gate.outcome", ""),
                log_loss_gain_mnat=tags.get("gate.log_loss_gain_mnat", ""),
                promoted_by=tags.get(PROMOTED_BY_TAG, ""),
                promoted_at=tags.get(PROMOTED_AT_TAG, ""),
                reason=tags.get(PROMOTED_REASON_TAG, ""),
            )
        )
    return sorted(rows, key=lambda r: int(r.version) if r.version.isdigit() else 0, reverse=True)


def promote(
    version: str,
    reason: str,
    who: str,
    uri: str | None = None,
    *,
    model_name: str = registry.MODEL_NAME,
    now: datetime | None = None,
) -> str | None:
    """Make ``version`` the champion with an audit trail; return the previous champion's version."""
    reason, who, version = reason.strip(), who.strip(), str(version).strip().lstrip("v")
    if not reason:
        raise PromotionError("--reason is required: say why the gate's verdict is overridden")
    if not who:
        raise PromotionError("--by is empty: say who promotes")
    uri = uri or registry.tracking_uri()
    _existing_store(uri)
    c = registry.client(uri)
    mv = _version(c, model_name, version)
    _servable(mv)
    current = registry.version_by_alias(registry.CHAMPION, uri, model_name)
    previous = None if current is None else str(current.version)
    if previous == version:
        raise PromotionError(f"version {version} is already the champion")
    at = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    for key, value in (
        (PROMOTED_BY_TAG, who),
        (PROMOTED_AT_TAG, at),
        (PROMOTED_REASON_TAG, reason[:5000]),
        (PREVIOUS_TAG, previous or ""),
    ):
        c.set_model_version_tag(model_name, version, key, value)
    line = f"Promoted to champion by hand by {who} at {at} (was {previous or 'none'}): {reason}"
    description = (mv.description or "").rstrip()
    c.update_model_version(model_name, version, description=f"{description}\n{line}" if description else line)
    c.set_registered_model_alias(model_name, registry.CHAMPION, version)
    return previous


def _version(c: Any, model_name: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException

    if not version.isdigit():
        raise PromotionError(f"{version!r} is not a version number (see `mem model list`)")
    try:
        return c.get_model_version(model_name, version)
    except MlflowException as exc:
        if registry._is_missing(exc):
            raise PromotionError(f"{model_name} has no version {version} (see `mem model list`)") from None
        raise


def _servable(mv: Any) -> None:
    """Refuse a version serving would refuse (its feature set or model type unknown here)."""
    tags = mv.tags or {}
    try:
        feature_sets.get(tags.get("feature_set", feature_sets.SEED.name))
        if "estimator" in tags:
            estimators.get(tags["estimator"])
    except (feature_sets.UnknownFeatureSet, estimators.UnknownEstimator) as exc:
        raise PromotionError(f"version {mv.version} cannot be served by this code: {exc}") from None
