"""RecoveryConfig: everything a recovery run needs besides the model, the Recipe and the data.

One small dataclass, as TextBrewer configures a distiller (temperature, loss weights, layer map)
and nn_pruning declares its training arguments: every field carries its default and its help
where it is declared (`field_help`), the CLI builds its options from them, and `to_json` /
`from_json` round-trip it (the card stores it). `validate()` refuses a bad value with one
sentence. Devices are named here, never resolved (the loop does that).

Objectives combine with weights: total = ce_weight * CE + kd_weight * KD + hidden_weight *
hidden-MSE + attention_weight * attention-MSE + pkd_weight * PKD (`objectives.py` cites each).
The named objectives (`OBJECTIVES`) are starting points that set those weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace

from analysis.core.adapters import ROLES
from analysis.configs import default_of, from_mapping, parse_json
from analysis.errors import HeadroomError

LAYER_MAPS = ("original", "uniform")
PRUNE_METHODS = ("none", "magnitude", "movement")  # analysis.recovery.pruning


def _field(default, *, help: str, minimum: float | None = None, above: bool = False,
           choices: tuple | None = None, factory=None):
    """A config field with its help text, and the range or choices its value must lie in."""
    meta = {"help": help, "minimum": minimum, "above": above, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RecoveryConfig:
    """How a compressed model is trained back: objective weights, budget, optimiser, data, device."""

    objective: str = _field("ce", help="name of the objective, for the card (ce, kd, tinybert, pkd, qat or custom)")
    # -------------------------------------------------------------- objective weights
    ce_weight: float = _field(1.0, minimum=0, help="weight of the task cross-entropy on the train labels")
    kd_weight: float = _field(0.0, minimum=0, help="weight of the soft-target loss, KL(teacher || student) at "
                                                    "temperature T, times T^2 (Hinton et al. 2015; DistilBERT)")
    temperature: float = _field(2.0, minimum=0, above=True, help="softmax temperature T of the soft targets")
    hidden_weight: float = _field(0.0, minimum=0, help="weight of the hidden-state MSE between mapped layers, "
                                                        "embeddings included (TinyBERT, Jiao et al. 2020)")
    attention_weight: float = _field(0.0, minimum=0, help="weight of the attention-map MSE between mapped layers, "
                                                           "over the kept heads only (TinyBERT)")
    pkd_weight: float = _field(0.0, minimum=0, help="weight of PKD's loss between the normalised [CLS] vectors of "
                                                     "mapped intermediate layers (Sun et al. 2019)")
    layer_map: str = _field("original", choices=LAYER_MAPS,
                            help="which teacher layer each student layer imitates: 'original' = the position the "
                                 "kept layer had in the teacher; 'uniform' = TinyBERT's g(m) = m * N / M")
    qat: bool = _field(False, help="train with the recipe's bits applied in the forward pass and a straight-through "
                                   "gradient (quantisation-aware training, Q8BERT); otherwise the bits are applied "
                                   "once, after training")
    # -------------------------------------------------------------- pruning during fine-tuning (pruning.py)
    prune_method: str = _field("none", choices=PRUNE_METHODS,
                               help="prune the encoder's linears while training: 'magnitude' = gradual magnitude "
                                    "pruning (top-k of |W|, Zhu & Gupta 2017), 'movement' = learned scores with a "
                                    "straight-through top-k (Sanh et al. 2020); 'none' = keep every weight (a recipe's "
                                    "own zeros are always kept)")
    prune_sparsity: float = _field(0.0, minimum=0, help="final fraction of zeros of every pruned matrix (local, "
                                                         "exact: round(s x n) of its n weights), in [0, 1)")
    prune_roles: list = _field(None, factory=lambda: list(ROLES),
                               help="matrices of each layer pruned (of query, key, value, attention_output, ffn_in, "
                                    "ffn_out; embeddings and classifier stay dense)")
    prune_warmup: float = _field(0.1, minimum=0, help="fraction of training before pruning starts (t_i of the cubic "
                                                       "schedule)")
    prune_end: float = _field(0.7, minimum=0, help="fraction of training at which the final sparsity is reached "
                                                    "(t_f; the rest trains at it and model selection happens there)")
    prune_every: int = _field(1, minimum=1, help="steps between two masks (top-k of |W| or of the scores; 1 = every "
                                                 "step, as the paper; the final sparsity's mask is always taken)")
    prune_lr: float = _field(1e-2, minimum=0, above=True,
                             help="AdamW learning rate of movement pruning's scores (no weight decay; the paper's "
                                  "mask_scores_learning_rate)")
    # -------------------------------------------------------------- budget and optimiser
    epochs: int = _field(1, minimum=1, help="epochs over the train split (the schedule's length)")
    minutes: float | None = _field(None, minimum=0, above=True,
                                   help="stop after this many minutes of training (the schedule then decays over "
                                        "the minutes); None = run all epochs")
    lr: float = _field(1e-4, minimum=0, above=True, help="peak AdamW learning rate")
    batch_size: int = _field(32, minimum=1, help="examples per training step")
    warmup_ratio: float = _field(0.1, minimum=0, help="share of training spent warming the learning rate up linearly")
    weight_decay: float = _field(0.01, minimum=0, help="AdamW weight decay (none on biases and LayerNorm gains)")
    freeze_word_embeddings: bool = _field(True, help="keep the word-embedding matrix frozen (as the demo models "
                                                     "were fine-tuned)")
    max_length: int = _field(128, minimum=3, help="tokens per training example; longer ones are truncated")
    seed: int = _field(0, minimum=0, help="seed of initialisation noise, dropout and data order")
    # -------------------------------------------------------------- data and model selection
    data: str | None = _field(None, help="training data (banking77, sst2, glue:<task>, a train file); "
                                         "None = the data the model was trained for")
    train_split: str = _field("train", help="split trained on (never the evaluation split)")
    holdout: int = _field(500, minimum=0, help="stratified examples of the train split kept out of training, "
                                               "for model selection and the live curve (0 = none: keep the last)")
    eval_every: int = _field(0, minimum=0, help="score the held-out examples every N steps (0 = four times per "
                                                "epoch), and at the end")
    eval_split: str | None = _field(None, help="split scored once, after training, for the card's before/after "
                                               "(None = the model's own, 'none' = skip)")
    device: str = _field("auto", help="cpu, cuda, cuda:N or auto (bf16 autocast on CUDA)")

    def validate(self) -> "RecoveryConfig":
        """Raise HeadroomError with one sentence for the first value out of its range."""
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None:
                if f.default is not None:
                    raise HeadroomError(f"Recovery option {f.name} needs a value ({meta['help']}).")
                continue
            if meta.get("choices") and value not in meta["choices"]:
                raise HeadroomError(f"Recovery option {f.name} must be one of {', '.join(meta['choices'])} "
                                    f"(got {value!r}).")
            if isinstance(f.default, bool):
                if not isinstance(value, bool):
                    raise HeadroomError(f"Recovery option {f.name} must be true or false (got {value!r}).")
                continue
            if meta.get("minimum") is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                    raise HeadroomError(f"Recovery option {f.name} must be a number (got {value!r}).")
                if isinstance(f.default, int) and not isinstance(value, int):
                    raise HeadroomError(f"Recovery option {f.name} must be a whole number (got {value!r}).")
                low = meta["minimum"]
                if value < low or (meta["above"] and value <= low):
                    raise HeadroomError(f"Recovery option {f.name} must be {'above' if meta['above'] else 'at least'} "
                                        f"{low:g} (got {value:g}).")
        self._validate_pruning()
        if self.warmup_ratio >= 1:
            raise HeadroomError(f"Recovery option warmup_ratio must be below 1 (got {self.warmup_ratio:g}).")
        if not any((self.ce_weight, self.kd_weight, self.hidden_weight, self.attention_weight, self.pkd_weight)):
            raise HeadroomError("Every objective weight is 0, so there is nothing to train for; set ce_weight or "
                                "kd_weight above 0.")
        return self

    def _validate_pruning(self) -> None:
        if not isinstance(self.prune_roles, list) or not self.prune_roles or \
                any(r not in ROLES for r in self.prune_roles):
            raise HeadroomError(f"Recovery option prune_roles must be a non-empty list of {', '.join(ROLES)} "
                                f"(got {self.prune_roles!r}).")
        if self.prune_sparsity >= 1:
            raise HeadroomError(f"Recovery option prune_sparsity must be below 1, a fraction of zeros in [0, 1) "
                                f"(got {self.prune_sparsity:g}).")
        for name in ("prune_warmup", "prune_end"):
            if getattr(self, name) > 1:
                raise HeadroomError(f"Recovery option {name} is a fraction of training, at most 1 "
                                    f"(got {getattr(self, name):g}).")
        if self.prune_method == "none":
            if self.prune_sparsity > 0:
                raise HeadroomError(f"prune_sparsity {self.prune_sparsity:g} needs a prune_method (magnitude or "
                                    "movement); a recipe's one-shot sparsity is its 'sparsity' field instead.")
            return
        if self.prune_sparsity == 0:
            raise HeadroomError(f"prune_method {self.prune_method} needs a prune_sparsity above 0 (e.g. 0.9).")
        if self.prune_end < self.prune_warmup:
            raise HeadroomError(f"prune_end ({self.prune_end:g}) comes before prune_warmup ({self.prune_warmup:g}); "
                                "the final sparsity must be reached after pruning starts.")
        if self.prune_method == "movement" and self.prune_end == 0:
            raise HeadroomError("Movement pruning learns its scores during training, so prune_end 0 (every weight "
                                "pruned before the first step, on untrained scores) is impossible; use magnitude or "
                                "a prune_end above 0.")

    @property
    def needs_teacher(self) -> bool:
        """Whether any objective compares with the teacher (everything but plain cross-entropy)."""
        return any((self.kd_weight, self.hidden_weight, self.attention_weight, self.pkd_weight))

    # -------------------------------------------------------------- presets and JSON
    @classmethod
    def for_objective(cls, name: str, **changes) -> "RecoveryConfig":
        """The named objective (`OBJECTIVES`) with `changes` on top."""
        if name not in OBJECTIVES:
            raise HeadroomError(f"Unknown objective '{name}'; choose from {', '.join(OBJECTIVES)}.")
        weights = {"objective": name, **OBJECTIVES[name][0]}
        return cls.from_dict({**weights, **changes})

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict) -> "RecoveryConfig":
        return from_mapping(cls, d, what="recovery config", example='{"objective": "kd"}',
                            unknown="Unknown recovery option(s)", known="known").validate()

    @classmethod
    def from_json(cls, text: str) -> "RecoveryConfig":
        return cls.from_dict(parse_json(text, "recovery config"))

    def replace(self, **changes) -> "RecoveryConfig":
        return replace(self, **changes).validate()


#: name -> (weights, what it is and where it comes from). Weights not named stay at their defaults.
OBJECTIVES: dict[str, tuple[dict, str]] = {
    "ce": ({"ce_weight": 1.0}, "plain re-fine-tuning on the task labels (Sajjad et al. 2023; Michel et al. 2019)"),
    "kd": ({"ce_weight": 0.5, "kd_weight": 0.5, "temperature": 2.0},
           "soft targets of the teacher at temperature T, mixed half and half with the labels "
           "(Hinton et al. 2015; DistilBERT's distillation loss, Sanh et al. 2019)"),
    "tinybert": ({"ce_weight": 0.0, "kd_weight": 1.0, "temperature": 1.0, "hidden_weight": 1.0,
                  "attention_weight": 1.0},
                 "TinyBERT's task distillation: hidden-state and attention MSE per mapped layer plus soft "
                 "cross-entropy on the logits at T = 1 (Jiao et al. 2020)"),
    "pkd": ({"ce_weight": 0.5, "kd_weight": 0.5, "temperature": 5.0, "pkd_weight": 100.0},
            "Patient KD: soft targets and labels plus the normalised [CLS] loss of intermediate layers, "
            "beta = 100 (Sun et al. 2019)"),
    "qat": ({"ce_weight": 1.0, "qat": True},
            "quantisation-aware fine-tuning: the recipe's bits in every forward, straight-through gradients "
            "(Zafrir et al. 2019, Q8BERT)"),
}


def field_help(name: str) -> str:
    return CONFIG_FIELDS[name].metadata["help"]


def field_default(name: str):
    return default_of(CONFIG_FIELDS[name])


#: RecoveryConfig's fields by name: default, help text and range in one place (the CLI reads them).
CONFIG_FIELDS = {f.name: f for f in fields(RecoveryConfig)}
