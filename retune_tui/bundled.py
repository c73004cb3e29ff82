"""The small model that ships in ``assets/``: a base and one adapter per task and method.

Every command that needs a model uses it when none is given. ``RETUNE_ASSETS`` points
elsewhere (for an installed copy, or to try a rebuilt set).
"""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_ENV = "RETUNE_ASSETS"


def assets_dir() -> Path:
    if os.environ.get(ASSETS_ENV):
        return Path(os.environ[ASSETS_ENV])
    return Path(__file__).resolve().parent.parent / "assets"


def base_dir() -> Path | None:
    """The bundled base model, if it is there."""
    path = assets_dir() / "base"
    return path if (path / "config.json").exists() else None


def is_base(path: str | Path | None) -> bool:
    """``path`` is the bundled base."""
    base = base_dir()
    return path is not None and base is not None and Path(path).resolve() == base.resolve()


def dtype_on(base: str | Path | None, dtype: str) -> str:
    """The dtype to run ``base`` in: ``auto`` is float32 on the bundled base, even on a GPU. The
    1M-parameter model needs no memory saved, and merged float32 solves ~9x faster there than
    bf16 with the adapter apart (H100, 2026-11-28: 73199 + 21439 in 0.59 s against 5.18 s;
    [3, -2, 5, 1] 3.9 s against 41 s)."""
    return "float32" if dtype == "auto" and is_base(base) else dtype


def adapter_dir(task: str, method: str) -> Path | None:
    """The bundled adapter for a task and method, if it is there."""
    path = assets_dir() / "adapters" / f"{task}-{method}"
    return path if (path / "adapter_config.json").exists() else None


def adapters() -> list[Path]:
    """Every bundled adapter."""
    root = assets_dir() / "adapters"
    return sorted(p for p in root.glob("*") if (p / "adapter_config.json").exists()) if root.is_dir() else []


def base_for(adapter: str | Path) -> str | None:
    """The base an adapter was trained on, when the user names only the adapter.

    The manifest's base if that path is here, else the bundled base (loading checks the
    fingerprint either way, so a wrong guess is one clear line, not garbage).
    """
    from retune_tui.manifest import Manifest

    manifest = Manifest.read(adapter)
    if manifest and Path(manifest.base).is_dir():
        return manifest.base
    base = base_dir()
    return str(base) if base else None
