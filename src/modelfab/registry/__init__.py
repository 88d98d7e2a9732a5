"""modelfab.registry: where datasets, scenarios, runs, models, metrics and costs are recorded."""

from modelfab.registry.ledger import CostRecord, Meter
from modelfab.registry.store import (
    CostEntry,
    DatasetRecord,
    ModelRecord,
    Registry,
    RunRecord,
    ScenarioRecord,
)

__all__ = [
    "CostEntry",
    "CostRecord",
    "DatasetRecord",
    "Meter",
    "ModelRecord",
    "Registry",
    "RunRecord",
    "ScenarioRecord",
]
