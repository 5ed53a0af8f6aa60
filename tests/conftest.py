import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tests never write into the user's results store: one throw-away store per test session.
if "HEADROOM_STORE" not in os.environ:
    import tempfile

    os.environ["HEADROOM_STORE"] = os.path.join(tempfile.mkdtemp(prefix="headroom-test-store-"), "results.sqlite")

import analysis  # noqa: E402

analysis.quiet()  # torchao/torch import-time logging, before transformers loads


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> str:
    """A saved tiny random BERT (3 layers x 4 heads, the MiniLM tokenizer): a model directory for CLI tests.

    Shared by the whole session: tests read it and copy it, never write into it.
    """
    from analysis.testing import tiny_loaded

    d = tmp_path_factory.mktemp("tiny_model")
    loaded = tiny_loaded()
    loaded.model.save_pretrained(str(d))
    loaded.tokenizer.save_pretrained(str(d))
    return str(d)
