import sys
from pathlib import Path

# Let the tests import the package from the checkout even before `pip install -e .`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
