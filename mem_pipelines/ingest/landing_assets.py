"""``kline_files``: the landing folder's new kline files of one symbol, validated and written to QuestDB.

The landing sensor (``ingest/sensors.py``) requests a run of ``landing_job`` per symbol with the
file names in the run config; the run materialises this asset and then ``candles`` (which
depends on it) with its quality checks, for that symbol's partition. The body is thin:
``landing.ingest_landed`` does the work.
"""

from pathlib import Path

import dagster as dg
from pydantic import Field

from mem_pipelines.ingest.landing import ingest_landed
from mem_pipelines.ingest.validation import DEFAULT_INTERVAL
from mem_pipelines.resources import QuestDBResource
from mem_pipelines.settings import LandingSettings

ASSET = "kline_files"
CHECK = "no_file_quarantined"


class LandingResource(dg.ConfigurableResource):
    """The landing folder the sensor watches, its quarantine folder, and how long a file rests."""

    folder: str
    quarantine_folder: str = ""
    settle_s: float = 10.0

    def path(self) -> Path:
        return Path(self.folder)

    def quarantine(self) -> Path:
        return Path(self.quarantine_folder) if self.quarantine_folder else LandingSettings(self.path()).quarantine

    @classmethod
    def from_settings(cls, settings: LandingSettings) -> "LandingResource":
        return cls(folder=str(settings.folder), quarantine_folder=str(settings.quarantine), settle_s=settings.settle_s)


class LandingFilesConfig(dg.Config):
    """The files a run ingests (set by the landing sensor)."""

    files: list[str] = Field(description="File names in the landing folder, all of this partition's symbol.")
    interval: str = Field(default=DEFAULT_INTERVAL, description="Candle interval of the files.")


def build_landing_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=ASSET,
        partitions_def=partitions_def,
        group_name="ingest",
        kinds={"questdb", "csv"},
        check_specs=[
            dg.AssetCheckSpec(
                CHECK, asset=ASSET, description="Every file of the run was valid (none went to quarantine)."
            )
        ],
        description=(
            "Binance kline files (.csv, .csv.gz, .zip) dropped into the landing folder (MEM_LANDING_DIR), "
            "validated and written to the QuestDB candles table; a bad file moves to quarantine/ with its reason."
        ),
    )
    def kline_files(
        context: dg.AssetExecutionContext,
        config: LandingFilesConfig,
        questdb: QuestDBResource,
        landing: LandingResource,
    ) -> dg.MaterializeResult:
        symbol = context.partition_key
        result = ingest_landed(
            questdb.settings(), landing.path(), landing.quarantine(), config.files, symbol, config.interval
        )
        for name, reason in result.quarantined:
            context.log.error(f"quarantined {name}: {reason}")
        if result.missing:
            context.log.warning(f"gone from the landing folder before the run: {', '.join(result.missing)}")
        if not result.ingested:
            raise dg.Failure(
                description=f"no file of {symbol} could be ingested",
                metadata={
                    "quarantined": dg.MetadataValue.json(dict(result.quarantined)),
                    "missing": dg.MetadataValue.json(result.missing),
                },
            )
        files = {
            r.source: {"rows": r.rows, "first_ts": r.first.isoformat(), "last_ts": r.last.isoformat()}
            for r in result.ingested
        }
        return dg.MaterializeResult(
            metadata={
                "rows": dg.MetadataValue.int(result.rows),
                "files": dg.MetadataValue.json(files),
                "first_ts": dg.MetadataValue.text(min(r.first for r in result.ingested).isoformat()),
                "last_ts": dg.MetadataValue.text(max(r.last for r in result.ingested).isoformat()),
                "quarantined": dg.MetadataValue.json(dict(result.quarantined)),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=CHECK,
                    passed=not result.quarantined,
                    metadata={
                        "quarantined": dg.MetadataValue.json(dict(result.quarantined)),
                        "count": len(result.quarantined),
                    },
                )
            ],
        )

    return kline_files
