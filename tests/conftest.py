import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import analysis  # noqa: E402

analysis.quiet()  # torchao/torch import-time logging, before transformers loads
