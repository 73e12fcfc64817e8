import sys
from pathlib import Path

# Let the tests import the package from the checkout even before `pip install -e .`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gc  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _collect_on_the_test_thread():
    """Once a GUI test has made the app, automatic garbage collection is off (murid_gui.gui_gc)
    and only the event loop's timer collects: after each test, collect here, on the thread that
    is the GUI thread, before the next test starts threads of its own."""
    yield
    if not gc.isenabled():
        gc.collect()
