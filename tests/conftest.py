"""Make the test helpers in this folder (``fabricate``) importable under any pytest import mode."""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
