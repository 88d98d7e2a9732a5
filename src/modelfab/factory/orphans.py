"""Files in MODELFAB_HOME that nothing owns: what a crash could leave and a sweep must remove.

An orphan is
- a folder under artifacts/models/ that no registry model references,
- anything under artifacts/.staging/ or artifacts/.pending/ (builds clean both when they end,
  and the next build sweeps what a killed one left),
- a dataset Parquet file without its metadata file (metadata is written after the data),
- a temporary file of an atomic write (`.<name>.*.tmp`) anywhere under MODELFAB_HOME.
Caches (teacher features, token vectors, precision decisions) are not orphans: they are keyed
by content and reused by every build.
"""

from __future__ import annotations

from pathlib import Path

from modelfab.registry import Registry


def orphan_files(home: Path, registry: Registry) -> list[Path]:
    home = Path(home)
    artifacts = home / "artifacts"
    out: list[Path] = []
    referenced = {Path(m.artifact_path).name for m in registry.list_models() if m.artifact_path}
    models = artifacts / "models"
    if models.is_dir():
        out += [p for p in sorted(models.iterdir()) if p.name not in referenced]
    for hidden in (".staging", ".pending"):
        folder = artifacts / hidden
        if folder.is_dir():
            out += sorted(folder.iterdir())
    datasets = home / "datasets"
    if datasets.is_dir():
        out += [
            p for p in sorted(datasets.glob("*.parquet")) if not p.with_suffix(".json").exists()
        ]
    out += sorted(p for p in home.rglob(".*.tmp"))
    return out
