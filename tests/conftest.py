"""Shared test set-up."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_bundled_model_unless_asked(request, tmp_path_factory, monkeypatch):
    """Commands fall back on the bundled model when none is given; in tests that would load a
    real model by accident. Only tests marked `bundled` see assets/."""
    if request.node.get_closest_marker("bundled") is None:
        monkeypatch.setenv("RETUNE_ASSETS", str(tmp_path_factory.mktemp("no-assets")))


@pytest.fixture(autouse=True)
def _never_the_hub(monkeypatch):
    """Tests never touch the network: the Hugging Face libraries look in the local cache only."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def free_port() -> str:
    """A port free now, for a two-process run: a fixed one a run before may still hold."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny Llama saved as a base model (weights large enough for a LoRA to move the loss)."""
    import torch
    from tiny_models import tiny_model

    path = tmp_path_factory.mktemp("base") / "llama"
    model, tok = tiny_model("llama", dtype=torch.float32, init=0.3)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
