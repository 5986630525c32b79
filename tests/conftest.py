import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def digiface():
    from tlgan.models.generators import load_generator

    return load_generator("digiface", "cpu")
