"""The small manifest every adapter directory carries beside peft's own files.

It says what the adapter was made for (task, method, base model, tokenizer, the sizes
it was trained on), so the CLI and the app pick the right prompts and call out a
mismatch in one line instead of producing garbage.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from retune_tui.errors import InputError, UserError
from retune_tui.files import atomic_write_text

MANIFEST_NAME = "retune.json"

# Config keys that differ between copies of the same model, not between models.
_VOLATILE = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache", "_attn_implementation",
             "_attn_implementation_autoset", "attn_implementation"}


def package_versions(*names: str) -> dict[str, str]:
    """The installed version of each package (for manifests and benchmark results)."""
    import importlib.metadata

    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def config_fingerprint(config: dict[str, Any]) -> str:
    """A short hash of a model's architecture config, the same for every copy of it."""
    stable = {k: v for k, v in sorted(config.items()) if k not in _VOLATILE}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Manifest:
    task: str
    method: str
    base: str  # the base model as it was named (path or hub name)
    base_fingerprint: str
    tokenizer: str
    train_lengths: tuple[int, int]
    weighting: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    final_loss: float | None = None
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, directory: str | Path) -> None:
        data = asdict(self)
        data["train_lengths"] = list(self.train_lengths)
        atomic_write_text(Path(directory) / MANIFEST_NAME, json.dumps(data, indent=2) + "\n")

    @classmethod
    def read(cls, directory: str | Path) -> Manifest | None:
        path = Path(directory) / MANIFEST_NAME
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise TypeError(f"it holds a JSON {type(data).__name__}, not an object")
            data["train_lengths"] = tuple(data["train_lengths"])
            return cls(**data)
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path} is not a valid retune manifest ({exc})") from None

    def check(self, directory: str | Path, *, task: str | None, method: str | None, fingerprint: str | None,
              what: str = "adapter") -> None:
        """One clear line when the adapter (or ``what``) was made for something else than asked."""
        if task is not None and task != self.task:
            raise InputError(f"{what} {directory} was trained for task {self.task!r}, not {task!r}")
        if method is not None and method != self.method:
            raise InputError(f"{what} {directory} was trained for method {self.method!r}, not {method!r}")
        if fingerprint is not None and fingerprint != self.base_fingerprint:
            raise InputError(f"{what} {directory} was trained on base {self.base!r}, "
                             "which is not the base model given (its architecture differs)")


def full_model_manifest(base: str | Path) -> Manifest | None:
    """The manifest of a model fine-tuned whole for a task (`retune train --full`), or None: a
    hub name, a folder without one, or a base pre-trained on skills (made for no task)."""
    from retune_tui.tasks import TASKS

    if not Path(base).is_dir():
        return None
    manifest = Manifest.read(base)
    return manifest if manifest is not None and manifest.task in TASKS else None
