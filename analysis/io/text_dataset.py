"""TextDataset: the labelled texts every loader returns (bundled sets, GLUE, a user's file).

It is plain data: subsetting (`analysis.io.subsets`) and batching (`analysis.io.batching`) make
new ones or read it, and `indices` keeps each example's place in its source split through both.
"""

from dataclasses import dataclass, field


@dataclass
class TextDataset:
    """Texts (and optional text pairs) with integer labels and the names of those labels."""

    name: str                 # e.g. "banking77:test", "sst2:dev", "my.csv"
    texts: list[str]
    text_pairs: list[str] | None  # the second sentence of pair tasks (MRPC, MNLI, ...); None for single texts
    labels: list[int] | None  # indices into label_names; None if the data has no labels
    label_names: list[str]
    metric: str               # "accuracy" | "f1" | "matthews": the task's headline metric
    indices: list[int]        # position of each example in the full source split (kept through subsetting)
    # what looked suspicious when loading or aligning it (some empty texts, labels matched by order):
    # one sentence each, carried to the CLI's JSON ("warnings") and the dashboard
    warnings: list[str] = field(default_factory=list)

    def __len__(self):
        return len(self.texts)
