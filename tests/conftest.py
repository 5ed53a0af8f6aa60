import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import analysis  # noqa: E402,F401  (quiets torchao/torch import-time logging before transformers loads)
