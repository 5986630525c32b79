import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Never read or write the user's own knob library: every test run (and the CLI it starts) gets an empty one.
os.environ["TLGAN_KNOBS_DIR"] = tempfile.mkdtemp(prefix="tlgan-test-knobs-")
os.environ["TLGAN_CACHE_DIR"] = tempfile.mkdtemp(prefix="tlgan-test-cache-")  # e.g. the teaching prior


@pytest.fixture(scope="session")
def digiface():
    from tlgan.models.generators import load_generator

    return load_generator("digiface", "cpu")
