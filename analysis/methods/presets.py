"""Named demo recipes, one per paper: each a function returning a Recipe, with its citation.

- "Sixteen heads: mask 40%" — Michel, Levy & Neubig 2019: mask the 40% least important heads.
  It needs a head importance (`HeadImportance`), passed explicitly; without one it raises
  rather than masking heads nobody ranked.
- "Poor man's BERT: drop top 2" — Sajjad, Dalvi, Durrani & Nakov 2023: drop the top two layers
  (the top layer only on a 2-layer model).
- "Q-BERT: 4-bit per-head" — Shen et al. 2020: 4-bit weights with one range per head group,
  8-bit word embeddings (uniform bits; Q-BERT's Hessian-guided mixed precision is
  `methods.sensitivity.allocate_bits`).
- "8-bit everything" — 8-bit weights (per-channel ranges) and 8-bit embeddings, the weight side
  of Q8BERT (Zafrir et al. 2019, which also quantises activations and trains with it).

`PRESETS` lists them in the dashboard's button order; `build_preset(name, ...)` builds one,
`preset_recipes(...)` several. Every recipe is simulated like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from analysis.errors import HeadroomError
from analysis.core.recipe import Recipe
from analysis.methods.importance import HeadImportance
from analysis.methods.layers import dropped_layers_for, max_k
from analysis.methods.selection import least_important_fraction

SIXTEEN_HEADS = "Sixteen heads: mask 40%"
POOR_MANS_BERT = "Poor man's BERT: drop top 2"
Q_BERT = "Q-BERT: 4-bit per-head"
EIGHT_BIT = "8-bit everything"


def sixteen_heads(importance: HeadImportance | None, fraction: float = 0.4) -> Recipe:
    """Michel et al. 2019: the `fraction` least important heads masked, by `pruning_order`."""
    if importance is None:
        raise HeadroomError(f"The '{SIXTEEN_HEADS}' preset ranks heads by importance: compute a head "
                            "importance first (e.g. michel).")
    return Recipe(masked_heads=least_important_fraction(importance, fraction),
                  name=f"{SIXTEEN_HEADS} ({importance.method} importance)")


def poor_mans_bert(num_layers: int, k: int = 2) -> Recipe:
    """Sajjad et al. 2023: the top k layers dropped (fewer when the model has too few to keep one)."""
    k = min(k, max_k("top", num_layers))
    if k < 1:
        raise HeadroomError(f"A {num_layers}-layer model has no layer to drop: one must stay.")
    return Recipe(dropped_layers=dropped_layers_for("top", k, num_layers), name=POOR_MANS_BERT)


Q_BERT_FFN_GROUPS = 8


def q_bert() -> Recipe:
    """Shen et al. 2020: 4-bit weights, one range per head group; 8-bit word embeddings."""
    # FFN matrices have no heads and use num_groups row groups, which must divide their rows: 8
    # divides the hidden and FFN sizes of every supported family (ELECTRA-small's 256/1024 too; 12 does not)
    return Recipe(weight_bits=4, granularity="per-head", embedding_bits=8, num_groups=Q_BERT_FFN_GROUPS, name=Q_BERT)


def eight_bit() -> Recipe:
    """8-bit weights with per-channel ranges and 8-bit embeddings (the weights of Q8BERT)."""
    return Recipe(weight_bits=8, embedding_bits=8, granularity="per-channel", name=EIGHT_BIT)


@dataclass(frozen=True)
class Preset:
    """One named recipe: how to build it, the paper it follows, what it needs."""

    name: str  # the button label; the recipe's name starts with it
    id: str  # a short name for the command line, e.g. "q-bert"
    citation: str  # authors, year, title, venue
    what: str  # one sentence on what the recipe does
    needs_importance: bool  # True: `build` needs a HeadImportance
    build: Callable[[int, HeadImportance | None], Recipe]  # (num_layers, importance) -> Recipe

    def to_dict(self) -> dict:
        return {"name": self.name, "id": self.id, "citation": self.citation, "what": self.what,
                "needs_importance": self.needs_importance}


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(SIXTEEN_HEADS, "sixteen-heads", "Michel, Levy & Neubig 2019, \"Are Sixteen Heads Really Better than One?\", NeurIPS 2019",
           "mask the 40% least important heads (one-shot, global ranking)", True,
           lambda num_layers, importance: sixteen_heads(importance)),
    Preset(POOR_MANS_BERT, "poor-mans-bert", "Sajjad, Dalvi, Durrani & Nakov 2023, \"On the Effect of Dropping Layers of "
                           "Pre-trained Transformer Models\" (Poor Man's BERT), Computer Speech & Language 77",
           "drop the top two encoder layers (no re-fine-tuning here)", False,
           lambda num_layers, importance: poor_mans_bert(num_layers)),
    Preset(Q_BERT, "q-bert", "Shen et al. 2020, \"Q-BERT: Hessian Based Ultra Low Precision Quantization of BERT\", AAAI 2020",
           "4-bit weights with per-head ranges, 8-bit word embeddings (simulated)", False,
           lambda num_layers, importance: q_bert()),
    Preset(EIGHT_BIT, "8-bit", "Zafrir, Boudoukh, Izsak & Wasserblat 2019, \"Q8BERT: Quantized 8Bit BERT\", "
                      "NeurIPS EMC2 Workshop 2019",
           "8-bit weights with per-channel ranges and 8-bit word embeddings (activations stay fp32)", False,
           lambda num_layers, importance: eight_bit()),
)}


def get_preset(name: str) -> Preset:
    """A preset by its name or its short id (case-insensitive)."""
    for preset in PRESETS.values():
        if name.strip().lower() in (preset.name.lower(), preset.id):
            return preset
    raise HeadroomError(f"There is no preset '{name}'; choose from {', '.join(p.id for p in PRESETS.values())}.")


def build_preset(name: str, num_layers: int, importance: HeadImportance | None = None) -> Recipe:
    """The named preset's (name or id) Recipe for a model with `num_layers` layers."""
    return get_preset(name).build(num_layers, importance)


def preset_recipes(num_layers: int, importance: HeadImportance | None = None,
                   names: list[str] | None = None) -> dict[str, Recipe]:
    """Preset name -> Recipe for the given presets (names or ids; all by default).

    A preset that needs importance raises without it.
    """
    chosen = [get_preset(n) for n in names] if names else list(PRESETS.values())
    return {p.name: p.build(num_layers, importance) for p in chosen}
