"""Shared test fixtures: repository paths, the shared templates folder, a
fresh plugin manager, and the scriptable fake backend.

The shared folder (real chat templates) lives beside the clone
(``<repo>/../shared``), never inside it. Nothing here is autouse.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The project's shared/ folder lies beside the clone (CI lays it there);
# META_SPIDER_SHARED_DIR points elsewhere.
SHARED_DIR = Path(os.environ.get("META_SPIDER_SHARED_DIR", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED_DIR / "templates").is_dir():
        raise FileNotFoundError(
            f"{SHARED_DIR}/templates is missing: the tests expect the project's shared/ folder "
            "beside the clone, or META_SPIDER_SHARED_DIR pointing at it"
        )
    return SHARED_DIR


@pytest.fixture
def plugin_manager(monkeypatch: pytest.MonkeyPatch):
    """A fresh plugin manager with the built-ins and installed third-party
    plugins (an inherited META_SPIDER_PLUGINS pin is cleared)."""
    from meta_spider.plugins import PLUGINS_ENV_VAR, make_plugin_manager

    monkeypatch.delenv(PLUGINS_ENV_VAR, raising=False)
    return make_plugin_manager()


@pytest.fixture
def fake_backend():
    """A FakeBackend with the default ChatML/<tool_call> template and no script."""
    from meta_spider.backends import FakeBackend

    return FakeBackend()


@pytest.fixture(scope="session")
def tiny_world():
    """The embedded ``tiny`` world, installed once into the world cache (or
    taken from it): every test that needs a trained base shares this one,
    the shipped base. A cache holding another base (trained before the base
    shipped, on another kind of CPU) gets the shipped one instead."""
    from meta_spider.loom.world.cache import build_world
    from meta_spider.loom.world.shipped import ShippedBase

    world = build_world("tiny", seed=0, progress=False)
    if world.manifest["model_sha256"] != ShippedBase.find(world.manifest["key"]).manifest["files"]:
        world = build_world("tiny", seed=0, progress=False, force=True)
    return world
