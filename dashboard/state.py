"""The dashboard's whole state — model, data, subset, device, recipe, page — in one place.

Every key the app keeps in `st.session_state` is declared below (`SESSION_KEYS`, with what it
holds); pages and widgets use these names, never a string of their own.

It lives in `st.session_state` and is mirrored in `st.query_params`, so a copied link opens the
same view: `?model=demo&data=banking77&split=test&n=500&device=cpu&page=heads&r=h8.0.0.0.0.800`.

The recipe travels in the URL in a compact form (`encode_recipe` / `decode_recipe`): fields
joined by `_`, each a one-letter tag and its value, and only fields that differ from the
baseline. Masked heads are one hex bit-mask per layer (bit h = head h masked), so 40% of
BERT-base's 144 heads still fits in ~40 characters:

    h8.0.0.0.0.800   heads 0:3 and 5:11 masked        l4.5   layers 4 and 5 dropped
    b8 / b8.8.4.4    weight bits, all layers / per layer   e8     embedding bits
    gph              granularity (pt per-tensor, pc per-channel, ph per-head, gr groups)
    n16              num_groups     a8   activation bits     s0   asymmetric ranges
    fAAg.~8          masked FFN neurons: per layer ("." between layers, empty = none) the bit-mask of its
                     units (bit j = unit j masked), packed little-endian, base64url with "~" for "_"
    p5000 / p1000.2000.3000   magnitude sparsity in units of 0.01%, all layers / per layer
    rio              sparsity roles, one letter each (q k v o = attention, i = ffn_in, u = ffn_out)
    cg               global sparsity threshold (local is the default)
    t24              the 2:4 sparsity pattern (unstructured is the default)
    w0i8.2u16        low rank: layer, role letter (as above), rank, per matrix     x128   factorised embedding size
    k0-1.2-3 / km0-5.. shared layers: groups ("." between), a group's layers joined by "-"; "m" first = mean mode
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

import streamlit as st

from analysis.errors import HeadroomError
from analysis.core.recipe import DEFAULT_NUM_GROUPS, Recipe

from dashboard import pages

GRANULARITY_CODES = {"per-tensor": "pt", "per-channel": "pc", "per-head": "ph", "groups": "gr"}
CODE_GRANULARITY = {v: k for k, v in GRANULARITY_CODES.items()}
ROLE_CODES = {"query": "q", "key": "k", "value": "v", "attention_output": "o", "ffn_in": "i", "ffn_out": "u"}
CODE_ROLE = {v: k for k, v in ROLE_CODES.items()}
PATTERN_CODES = {"2:4": "24", "unstructured": "u"}
CODE_PATTERN = {v: k for k, v in PATTERN_CODES.items()}
DEFAULT_LIMIT = 500
MAX_LIMIT = 200_000  # the subset box's max_value (dashboard/views/model_data.py) and load_dataset's row limit
# what a link's values may be (checked by `parse_link`; anything else: a warning and the default)
DEVICES = ("cpu", "cuda", "auto")
SPLITS = ("test", "train", "dev", "validation", "dev_mismatched", "validation_mismatched")
BUNDLED_DATA = ("banking77", "banking", "sst2", "sst-2", "tiny")
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# the most layers and heads a link's recipe may name (BERT-large has 24 x 16): a longer code is garbage
MAX_LINK_LAYERS, MAX_LINK_HEADS = 128, 128
MAX_LINK_CHARS = 16384  # 50% of BERT-base's 12 x 3072 FFN neurons is ~6,200 characters
MAX_LINK_UNITS = 1 << 16
MAX_UNDO = 50  # recipes the Undo button can go back through

# ------------------------------------------------------------------------------ session-state keys
SESSION_KEYS: dict[str, str] = {}  # key -> what st.session_state holds under it
SESSION_KEY_FAMILIES: dict[str, str] = {}  # prefix -> what each key starting with it holds


def _key(name: str, what: str) -> str:
    SESSION_KEYS[name] = what
    return name


def _family(prefix: str, what: str) -> str:
    SESSION_KEY_FAMILIES[prefix] = what
    return prefix


# the view: model, data, recipe, page (mirrored in the URL)
CHOICE = _key("choice", "DataChoice: the model, data, subset and device of this session")
RECIPE = _key("recipe", "Recipe: the what-if every page shows and edits")
PAGE = _key("page", "str: the name (dashboard.pages) of the page drawn last; written into the URL")
START_PAGE = _key("start_page", "str: the page the link's ?page= asked for on the first run ('' = the default)")
URL_WARNINGS = _key("url_warnings", "list[str]: what was wrong with the link, shown once above the page")
UNDO = _key("undo", "list[Recipe]: the recipes before each change, newest last (the panel's Undo)")
RECIPE_ERROR = _key("recipe_error", "str: why the last recipe change was refused, shown once by the metrics panel")
# results of this session
HISTORY = _key("history", "{(choice key, recipe key): Recipe}: every recipe the metrics panel showed (Trade-offs)")
STORE_WRITTEN = _key("store_written", "{(choice key, recipe key): row id}: the history rows this session wrote to the results store")
STORE_PROBLEM = _key("store_problem", "str: why the results store cannot be used (warned once); history then stays in memory")
LATENCY_REMEASURE = _key("latency_remeasure_asked", "bool: the metrics panel's Re-measure was clicked; the next draw times again")
BACKENDS = _key("backends", "{choice key: list of backend rows}: ONNX Runtime / torch int8 results measured on Bits (Trade-offs rows)")
LAST_UPDATE_S = _key("last_update_s", "float: seconds the metrics panel took to update last time")
JOBS = _key("jobs", "{job name: widgets.Job}: the background analyses started in this session")
JOB_SEEN = _family("job_seen_", "True once the page has redrawn with that finished job's result")
IMPORTANCE = _family("importance::", "HeadImportance of the unpruned model, per model and data (choice key)")
HESSIAN = _family("hessian::", "Q-BERT Hessian sensitivity per layer, per model and data (choice key)")
CURVES = _key("curves", "{(choice key, order, method): PruneCurve}: the pruning curves run in this session")
HEADS_SEED = _key("heads_seed", "int: the seed the next 'Random k' click on the Heads page uses")
BITS_BACKENDS = _key("bits_backends", "list[dict]: the backends table (torch / ONNX Runtime) measured last (Bits)")
BITS_REAL = _key("bits_real", "(fp32 dict, low-precision dict): the really quantised model measured last (Bits)")
ATTENTION_TEXT = _key("att_text", "str: the sentence typed on the Attention page (a text_input)")
ATTENTION_TEXT_FOR = _key("att_text_for", "str: the data set whose example sentence att_text was filled with")
ATTENTION_IMAGES = _key("att_images", "(PNG bytes, SVG bytes): the attention overview prepared for download")
PROFILES = _key("profiles", "{(choice key, recipe key, batch size, seq len): profile report} (Profile)")
PROFILE_SWEEP = _key("profile_sweep", "{(choice key, recipe key): DataFrame}: time and FLOPs per component vs sequence length (Profile)")
RECOVERY_RUNS = _key("recovery_runs", "{(choice key, recipe key, objective): {recipe, result}}: recovered models (Recovery)")
RECOVERY_CURVE = _key("recovery_curve", "list[dict]: the logged rows (step, loss, held-out metric) of the running recovery")
MODEL_ZIP = _key("to_zip", "(recipe key, zip bytes): the materialized model built for download (Trade-offs)")
# widgets whose value the code reads or sets through st.session_state
HEAD_GRID = _family("head_grid_L", "list[int]: the kept heads of one layer (the head grid's pills)")
LAYERS_KEEP = _family("layers_keep_", "bool: the 'keep this layer' checkbox of one layer (Layers)")
MODEL_KIND = _key("md_model_kind", "str: the model radio of Model & data (demo, demo-sst2, other)")
DATA_KIND = _key("md_data_kind", "str: the data radio of Model & data (bundled, GLUE task, upload a file)")
BUNDLED_DATA = _key("md_bundled", "str: the bundled data set picked on Model & data")
HEADS_METHOD = _key("heads_method", "str: the importance method picked on the Heads page")
BITS_MODE = _key("bits_mode", "str: 'same for every layer' or 'per layer' (Bits)")
BITS_ALL = _key("bits_all", "int: weight bits of every encoder layer (Bits)")
BITS_LAYER = _family("bits_layer_", "int: weight bits of one encoder layer (Bits, per layer)")
BITS_EMB = _key("bits_emb", "int: word-embedding bits (Bits)")
BITS_GRAN = _key("bits_gran", "str: the granularity of the ranges (Bits)")
BITS_SYM = _key("bits_sym", "bool: symmetric ranges (Bits)")
RECOVERY_RECIPE = _key("rec_recipe", "str: the session recipe picked for recovery (Recovery)")
RECOVERY_OBJECTIVE = _key("rec_objective", "str: the recovery objective picked (Recovery)")
RECOVERY_PRUNE = _key("rec_prune", "str: pruning while training, none|magnitude|movement (Recovery)")
RECOVERY_PRUNE_SPARSITY = _key("rec_prune_sparsity", "int: final sparsity in % of pruning while training (Recovery)")
RECOVERY_BUDGET = _key("rec_budget", "str: 'epochs' or 'minutes' (Recovery)")
RECOVERY_AMOUNT = _family("rec_amount_", "number: the epochs or minutes of the recovery budget (Recovery)")
RECOVERY_PICK_MODEL = _key("rec_pick_model", "str: the recovered model to make current (Recovery)")
NEURON_IMPORTANCE = _family("neuron_importance::", "NeuronImportance of the unpruned model on a train subset, per (train data, method) (Weights)")
W_FFN_METHOD = _key("w_ffn_method", "str: the FFN neuron importance method picked (Weights)")
W_FFN_EXAMPLES = _key("w_ffn_examples", "int: train examples the FFN neuron importance is computed on (Weights)")
W_FFN_FRACTION = _key("w_ffn_fraction", "float: the fraction of FFN neurons pruned (Weights)")
W_FFN_ORDER = _key("w_ffn_order", "str: 'uniform per layer' or 'global order' for FFN neurons (Weights)")
W_SPARSITY = _key("w_sparsity", "float: the magnitude sparsity fraction (Weights)")
W_SPARSITY_ROLES = _key("w_sparsity_roles", "list[str]: the matrices the sparsity applies to (Weights)")
W_SPARSITY_SCOPE = _key("w_sparsity_scope", "str: local or global sparsity threshold (Weights)")
W_SPARSITY_PATTERN = _key("w_sparsity_pattern", "str: 'unstructured' or '2:4' magnitude sparsity (Weights)")
W_RANK_LAYERS = _key("w_rank_layers", "list[int]: the layers whose matrices are cut to low rank (Weights)")
W_RANK_ROLES = _key("w_rank_roles", "list[str]: the matrices of those layers cut to low rank (Weights)")
W_RANK_MODE = _key("w_rank_mode", "str: 'fraction of full rank' or 'rank per role' (Weights)")
W_RANK_FRACTION = _key("w_rank_fraction", "float: the rank as a fraction of each matrix's full rank (Weights)")
W_RANK_OF = _family("w_rank_of_", "int: the rank of one role's matrices (Weights, rank per role)")
W_SHARE_PRESET = _key("w_share_preset", "str: none / neighbouring pairs / all layers one / groups typed below (Weights)")
W_SHARE_MODE = _key("w_share_mode", "str: first or mean, the weights a shared group runs (Weights)")
W_SHARE_GROUPS = _key("w_share_groups", "str: typed groups of shared layers, '0,1; 2,3' (Weights)")
W_SHARE_SYNCED = _key("w_share_synced", "tuple: the sharing the Weights widgets last wrote or showed (Weights)")
W_EMBEDDING = _key("w_embedding", "int: the factorised embedding size E, 0 = full (Weights)")


def head_grid_key(layer: int) -> str:
    return f"{HEAD_GRID}{layer}"


def layers_keep_key(layer: int) -> str:
    return f"{LAYERS_KEEP}{layer}"


def bits_layer_key(layer: int) -> str:
    return f"{BITS_LAYER}{layer}"


def rank_of_key(role: str) -> str:
    return f"{W_RANK_OF}{role}"


def neuron_importance_key(train: DataChoice, method: str) -> str:
    return f"{NEURON_IMPORTANCE}{train.key()}::{method}"


def importance_key(choice: DataChoice) -> str:
    return f"{IMPORTANCE}{choice.key()}"


def hessian_key(choice: DataChoice) -> str:
    return f"{HESSIAN}{choice.key()}"


def job_seen_key(name: str, job) -> str:
    return f"{JOB_SEEN}{name}_{id(job)}"


def is_declared(key: str) -> bool:
    """Whether `key` is one of the session keys above (or of one of their families)."""
    return key in SESSION_KEYS or any(key.startswith(prefix) for prefix in SESSION_KEY_FAMILIES)


@dataclass
class DataChoice:
    """Which model and which examples: everything an Evaluator is keyed by."""

    model: str = "demo"
    data: str = "banking77"     # dataset spec: banking77, sst2, glue:<task>, or an uploaded file's path
    split: str = "test"
    limit: int = DEFAULT_LIMIT  # stratified subset size (0 = all)
    device: str = "cpu"
    text_column: str = ""
    pair_column: str = ""
    label_column: str = ""

    def key(self) -> tuple:
        return tuple(asdict(self).values())


def data_label(choice: DataChoice) -> str:
    """The data as a user names it: an uploaded file by its own name, not the path it was saved under."""
    from pathlib import Path

    if choice.data.endswith((".csv", ".tsv", ".jsonl", ".json")):
        path = Path(choice.data)
        stem = path.stem.rsplit("-", 1)[0] if "-" in path.stem else path.stem  # drop the content digest
        return f"{stem}{path.suffix} (uploaded)"
    return choice.data


def default_choice() -> DataChoice:
    """The start-up model and data; HEADROOM_DASHBOARD_MODEL=tiny makes tests run on a tiny model."""
    model = os.environ.get("HEADROOM_DASHBOARD_MODEL", "demo")
    data = os.environ.get("HEADROOM_DASHBOARD_DATA", "tiny" if model == "tiny" else "banking77")
    split = "dev" if data in ("sst2", "glue:sst2") else "test"
    return DataChoice(model=model, data=data, split=split)


# ------------------------------------------------------------------------------ recipe <-> URL
def encode_recipe(recipe: Recipe) -> str:
    parts = []
    if recipe.masked_heads:
        num_layers = max(l for l, _ in recipe.masked_heads) + 1
        masks = [0] * num_layers
        for layer, head in recipe.masked_heads:
            masks[layer] |= 1 << head
        parts.append("h" + ".".join(format(m, "x") for m in masks))
    if recipe.dropped_layers:
        parts.append("l" + ".".join(map(str, recipe.dropped_layers)))
    bits = recipe.weight_bits
    if isinstance(bits, list) and len(set(bits)) == 1:
        bits = bits[0]
    if bits != 32:
        parts.append("b" + (".".join(map(str, bits)) if isinstance(bits, list) else str(bits)))
    if recipe.embedding_bits != 32:
        parts.append(f"e{recipe.embedding_bits}")
    if recipe.granularity != "per-tensor":
        parts.append("g" + GRANULARITY_CODES[recipe.granularity])
    if recipe.num_groups != DEFAULT_NUM_GROUPS:
        parts.append(f"n{recipe.num_groups}")
    if recipe.activation_bits != 32:
        parts.append(f"a{recipe.activation_bits}")
    if not recipe.symmetric:
        parts.append("s0")
    if recipe.masked_neurons:
        parts.append("f" + encode_neurons(recipe.masked_neurons))
    sparsity = recipe.sparsity
    if isinstance(sparsity, list) and len(set(sparsity)) == 1:
        sparsity = sparsity[0]
    if sparsity != 0:
        values = sparsity if isinstance(sparsity, list) else [sparsity]
        parts.append("p" + ".".join(str(round(v * 10000)) for v in values))
    if recipe.sparsity_roles != list(ROLE_CODES):
        parts.append("r" + "".join(ROLE_CODES[r] for r in recipe.sparsity_roles))
    if recipe.sparsity_scope != "local":
        parts.append("cg")
    if recipe.sparsity_pattern != "unstructured":
        parts.append("t" + PATTERN_CODES[recipe.sparsity_pattern])
    if recipe.ranks:
        parts.append("w" + ".".join(f"{l}{ROLE_CODES[role]}{r}" for l, role, r in recipe.ranks))
    if recipe.embedding_size:
        parts.append(f"x{recipe.embedding_size}")
    if recipe.shared_layers:
        parts.append("k" + ("m" if recipe.share_mode == "mean" else "")
                     + ".".join("-".join(map(str, g)) for g in recipe.shared_layers))
    elif recipe.share_mode != "first":
        parts.append("km")
    return "_".join(parts)


def encode_neurons(masked: list[tuple[int, list[int]]]) -> str:
    """Masked FFN units per layer -> "<layer 0>.<layer 1>...": each a base64url bit-mask ("~" for "_")."""
    import base64

    import numpy as np

    layers = [""] * (max(l for l, _ in masked) + 1)
    for layer, units in masked:
        bits = np.zeros(max(units) + 1, dtype=np.uint8)
        bits[units] = 1
        packed = np.packbits(bits, bitorder="little").tobytes()
        layers[layer] = base64.urlsafe_b64encode(packed).decode().rstrip("=").replace("_", "~")
    return ".".join(layers)


def decode_neurons(text: str) -> list[tuple[int, list[int]]]:
    import base64

    import numpy as np

    masked = []
    for layer, code in enumerate(text.split(".")):
        if not code:
            continue
        raw = code.replace("~", "_")
        packed = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        units = np.flatnonzero(np.unpackbits(np.frombuffer(packed, dtype=np.uint8), bitorder="little"))
        masked.append((layer, [int(u) for u in units]))
    return masked


def _malformed():
    raise ValueError("malformed")


def decode_recipe(text: str) -> Recipe:
    """Inverse of `encode_recipe`; a malformed string raises HeadroomError with one sentence."""
    fields: dict = {}
    try:
        for part in filter(None, text.strip().split("_")):
            tag, value = part[0], part[1:]
            if tag == "h":
                fields["masked_heads"] = [(layer, head) for layer, m in enumerate(value.split("."))
                                          for head in range(int(m, 16).bit_length()) if int(m, 16) >> head & 1]
            elif tag == "l":
                fields["dropped_layers"] = [int(x) for x in value.split(".")]
            elif tag == "b":
                values = [int(x) for x in value.split(".")]
                fields["weight_bits"] = values if len(values) > 1 else values[0]
            elif tag == "e":
                fields["embedding_bits"] = int(value)
            elif tag == "g":
                fields["granularity"] = CODE_GRANULARITY[value]
            elif tag == "n":
                fields["num_groups"] = int(value)
            elif tag == "a":
                fields["activation_bits"] = int(value)
            elif tag == "s":
                fields["symmetric"] = value != "0"
            elif tag == "f":
                fields["masked_neurons"] = decode_neurons(value)
            elif tag == "p":
                values = [int(x) / 10000 for x in value.split(".")]
                fields["sparsity"] = values if len(values) > 1 else values[0]
            elif tag == "r":
                fields["sparsity_roles"] = [CODE_ROLE[c] for c in value]
            elif tag == "w":
                fields["ranks"] = [(int(m.group(1)), CODE_ROLE[m.group(2)], int(m.group(3)))
                                   for m in (re.fullmatch(r"(\d+)([a-z])(\d+)", e) for e in value.split("."))
                                   if m or _malformed()]
            elif tag == "x":
                fields["embedding_size"] = int(value)
            elif tag == "k":
                if value.startswith("m"):
                    fields["share_mode"], value = "mean", value[1:]
                fields["shared_layers"] = [[int(x) for x in g.split("-")] for g in value.split(".")] if value else []
            elif tag == "c":
                fields["sparsity_scope"] = {"g": "global", "l": "local"}[value]
            elif tag == "t":
                fields["sparsity_pattern"] = CODE_PATTERN[value]
            else:
                raise ValueError(tag)
        if len(text) > MAX_LINK_CHARS or any(l >= MAX_LINK_LAYERS or h >= MAX_LINK_HEADS for l, h in fields.get("masked_heads", [])) \
                or any(l >= MAX_LINK_LAYERS for l in fields.get("dropped_layers", [])) \
                or any(l >= MAX_LINK_LAYERS for g in fields.get("shared_layers", []) for l in g) \
                or any(l >= MAX_LINK_LAYERS or u[-1] >= MAX_LINK_UNITS for l, u in fields.get("masked_neurons", [])):
            raise ValueError("too large")
        return Recipe(**fields).check_values()  # the values every model refuses (bits 99, num_groups 0)
    except (ValueError, KeyError, IndexError, TypeError):  # binascii.Error is a ValueError
        raise HeadroomError(
            f"The recipe in the link ('{text[:40]}') is malformed; it was ignored and the baseline is shown."
        ) from None
    except HeadroomError as e:
        raise HeadroomError(f"The recipe in the link cannot be used ({str(e).rstrip('.')}); "
                            f"it was ignored and the baseline is shown.") from None


# ------------------------------------------------------------------------------ session state
def choice() -> DataChoice:
    return st.session_state[CHOICE]


def recipe() -> Recipe:
    return st.session_state[RECIPE]


def importance(choice: DataChoice):
    """The head importance computed in this session for this model and data, or None."""
    return st.session_state.get(importance_key(choice))


def set_importance(choice: DataChoice, value) -> None:
    st.session_state[importance_key(choice)] = value


def set_recipe(new: Recipe, adapter=None) -> bool:
    """Make `new` the current recipe (the head grid and sliders follow on their next render).

    With an adapter, an invalid recipe (e.g. every layer dropped) is refused: the current one
    stays and the reason waits in `recipe_error` for the metrics panel to show.
    """
    if adapter is not None:
        try:
            adapter.validate(new)
        except HeadroomError as e:
            st.session_state[RECIPE_ERROR] = str(e)
            return False
    old = st.session_state.get(RECIPE)
    if old is not None and old.key() != new.key():
        undo = st.session_state.setdefault(UNDO, [])
        undo.append(old)
        del undo[:-MAX_UNDO]
    st.session_state[RECIPE] = new
    return True


def undo_recipe() -> bool:
    """Go back to the recipe before the last change; False when there is none."""
    undo = st.session_state.get(UNDO) or []
    if not undo:
        return False
    st.session_state[RECIPE] = undo.pop()
    return True


def set_choice(new: DataChoice) -> None:
    """A new model/data: the recipe starts over (its heads and layers may not exist any more)."""
    if new != st.session_state[CHOICE]:
        st.session_state[CHOICE] = new
        st.session_state[RECIPE] = Recipe()
        st.session_state[UNDO] = []  # the old recipes may not fit the new model


@dataclass
class Link:
    """What a shared link asks for, every value checked: the defaults where one was wrong, and why."""

    choice: DataChoice
    recipe: Recipe
    start_page: str  # '' = the default page
    warnings: list[str]  # one sentence per value of the link that was replaced by its default


def _link_value_problem(name: str, value: str) -> str | None:
    """Why a link's `name=value` cannot be used (validated like the CLI's --model/--data/...), or None."""
    from analysis.io.datasets import GLUE_TASKS, is_file_spec
    from analysis.io.models import DEMO_MODELS

    if name == "model":
        if value in DEMO_MODELS or value == "tiny" or os.path.isdir(value):
            return None
        if os.path.exists(value):
            return f"The model in the link ('{value}') is a file, not a model directory"
        if HUB_ID.fullmatch(value) and not value.startswith((".", "/", "~")):
            return None  # a hub id; whether it exists is found out when it loads
        return f"There is no model '{value}' (a demo name, a model directory or a hub id)"
    if name == "data":
        key = value.lower()
        if key in BUNDLED_DATA or (key.startswith("glue:") and key[5:] in GLUE_TASKS) or \
                (key.startswith("bolt:") and len(key) > 5):
            return None
        if is_file_spec(value):
            if os.path.isdir(value):
                return f"The data in the link ('{value}') is a directory, not a data file"
            if not os.path.isfile(value):
                return f"The data file in the link ('{value}') does not exist"
            return None
        return f"There is no dataset '{value}' (banking77, sst2, glue:<task>, bolt:<name> or a file)"
    if name == "device" and value not in DEVICES:
        return f"The device in the link ('{value}') is not one of {', '.join(DEVICES)}"
    if name == "split" and value not in SPLITS:
        return f"The split in the link ('{value}') is not one of {', '.join(SPLITS)}"
    return None


def parse_link(q) -> Link:
    """Read a link's query parameters (a mapping of str to str); a bad value gives a warning and its default."""
    c, d = default_choice(), default_choice()
    warnings = []
    for name in ("model", "data", "split", "device", "text_column", "pair_column", "label_column"):
        value = str(q.get(name, "")).strip()
        if not value:
            continue
        problem = _link_value_problem(name, value)
        if problem:
            warnings.append(f"{problem}; using {getattr(d, name)}.")
        else:
            setattr(c, name, value)
    if "n" in q:
        text = str(q["n"]).strip()
        if not text.isdigit() or int(text) > MAX_LIMIT:
            warnings.append(f"The subset size in the link ('{text[:20]}') is not a whole number from 0 to "
                            f"{MAX_LIMIT:,}; using {d.limit}.")
        else:
            c.limit = int(text)
    recipe = Recipe()
    if q.get("r"):
        try:
            recipe = decode_recipe(str(q["r"]))
        except HeadroomError as e:
            warnings.append(str(e))
    start = str(q.get("page", ""))
    if start and start not in pages.NAMES:
        default = next(p.title for p in pages.PAGES if p.name == pages.DEFAULT)
        warnings.append(f"There is no page '{start}'; showing {default}.")
        start = ""
    return Link(c, recipe, start, warnings)


def init() -> None:
    """On a session's first run, read the URL into session state (bad values: a warning, defaults)."""
    if CHOICE in st.session_state:
        return
    link = parse_link(st.query_params)
    st.session_state[CHOICE] = link.choice
    st.session_state[RECIPE] = link.recipe
    st.session_state[URL_WARNINGS] = link.warnings
    st.session_state[START_PAGE] = link.start_page


def sync_query_params(page: str | None = None) -> None:
    """Write the state into the URL (only what differs from the defaults, so links stay short)."""
    c, d = choice(), default_choice()
    params = {}
    for name in ("model", "data", "split", "device", "text_column", "pair_column", "label_column"):
        value = getattr(c, name)
        if value != getattr(d, name):
            params[name] = value
    if c.limit != d.limit:
        params["n"] = str(c.limit)
    code = encode_recipe(recipe())
    if code:
        params["r"] = code
    page = page or st.session_state.get(PAGE)
    if page:
        params["page"] = page
    if dict(st.query_params) != params:
        st.query_params.from_dict(params)
