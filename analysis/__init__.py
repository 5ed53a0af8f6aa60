"""Headroom's analysis package: load BERT-family classifiers, apply compression Recipes, measure.

No Streamlit import anywhere in here: the dashboard, the CLI, the tests and the benchmarks all
call this package. See README.md for the map of modules.
"""

import logging as _logging
import os as _os

# torchao (imported by transformers when installed) logs missing CUDA-only kernels on a CPU
# machine, and torch warns about its enums; neither is actionable for a Headroom user.
for _name in ("torchao", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)
_os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
_os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
