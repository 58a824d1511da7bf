"""Shared fixtures: where the real excerpts live (``../shared/data`` beside the project root)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# The suite never touches the network: datasets/transformers must not try the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Plan-time caches (the coco/mdetr spill, fetched remote inputs) go to a throwaway folder, not ~/.cache.
os.environ.setdefault("GROUNDING_CONVERT_CACHE", tempfile.mkdtemp(prefix="grounding-convert-test-cache-"))

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real annotation excerpts; the suite needs them (CI lays shared/ beside the clone)."""
    assert SHARED_DATA.is_dir(), f"real excerpts not found at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def flickr_excerpt(shared_data: Path) -> Path:
    return shared_data / "flickr30k_entities"


@pytest.fixture(scope="session")
def vg_excerpt(shared_data: Path) -> Path:
    return shared_data / "visual_genome"
