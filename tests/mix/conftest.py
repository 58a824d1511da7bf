"""The mixture fixtures (built once per session; see mix_fixtures.py)."""

from __future__ import annotations

import pytest
from mix_fixtures import Fixtures, build


@pytest.fixture(scope="session")
def mix_data(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    return build(tmp_path_factory.mktemp("mixdata"))
