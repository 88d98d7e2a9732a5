"""modelfab.registry: where datasets, scenarios, runs, models, metrics and costs are recorded."""

from modelfab.registry.ledger import CostRecord, Meter
from modelfab.registry.store import (
    CostEntry,
    DatasetRecord,
    FactoryRunRecord,
    ModelRecord,
    Registry,
    RunRecord,
    ScenarioRecord,
)

__all__ = [
    "CostEntry",
    "CostRecord",
    "DatasetRecord",
    "FactoryRunRecord",
    "Meter",
    "ModelRecord",
    "Registry",
    "RunRecord",
    "ScenarioRecord",
]
