import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tests never write into the user's results store: one throw-away store per test session.
if "HEADROOM_STORE" not in os.environ:
    import tempfile

    os.environ["HEADROOM_STORE"] = os.path.join(tempfile.mkdtemp(prefix="headroom-test-store-"), "results.sqlite")

import analysis  # noqa: E402

analysis.quiet()  # torchao/torch import-time logging, before transformers loads
