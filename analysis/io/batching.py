"""A TextDataset -> tokenised, length-bucketed, right-padded batches (tokenised once).

`make_batches` sorts examples by length so each batch pads only to its own longest example, and
counts the examples that truncation at `max_length` shortened (`BatchList.num_truncated`).
`collate` builds one Batch from pre-tokenised examples; training uses it for its own batches.
"""

from dataclasses import dataclass

import torch

from analysis.errors import HeadroomError
from analysis.io.text_dataset import TextDataset


@dataclass
class Batch:
    """One right-padded batch of tokenised examples, ready for a model's forward."""

    input_ids: torch.Tensor        # (B, T) long
    attention_mask: torch.Tensor   # (B, T) long
    token_type_ids: torch.Tensor | None
    example_ids: torch.Tensor      # (B,) positions in the TextDataset

    def to(self, device) -> "Batch":
        return Batch(self.input_ids.to(device), self.attention_mask.to(device),
                     self.token_type_ids.to(device) if self.token_type_ids is not None else None,
                     self.example_ids)

    def model_inputs(self) -> dict:
        """Keyword arguments for a HuggingFace model's forward."""
        out = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            out["token_type_ids"] = self.token_type_ids
        return out


class BatchList(list):
    """A list of Batch that also says how many examples were cut at max_length and how many tokens are padding."""
    num_truncated: int = 0
    num_examples: int = 0
    num_tokens: int = 0   # real (unpadded) tokens
    num_padded: int = 0   # positions after padding (B * T summed over batches)


def tokenize(ds: TextDataset, tokenizer, max_length: int) -> tuple[dict, int]:
    """Tokenise once, truncated at max_length; also count the examples that truncation shortened."""
    enc = tokenizer(ds.texts, ds.text_pairs, truncation=True, max_length=max_length, padding=False)
    # only an example that came out exactly max_length long can have been cut: re-check just those
    full = [i for i, ids in enumerate(enc["input_ids"]) if len(ids) >= max_length]
    cut = 0
    if full:
        again = tokenizer([ds.texts[i] for i in full], [ds.text_pairs[i] for i in full] if ds.text_pairs else None,
                          truncation=False, padding=False, verbose=False)
        cut = sum(len(ids) > max_length for ids in again["input_ids"])
    return enc, cut


def count_truncated(ds: TextDataset, tokenizer, max_length: int) -> int:
    """How many examples are longer than max_length tokens (and so get cut)."""
    return tokenize(ds, tokenizer, max_length)[1]


def collate(ids: list[list[int]], types: list[list[int]] | None, members: list[int], pad_id: int,
            length: int | None = None) -> Batch:
    """One right-padded Batch of the pre-tokenised examples `members`, as long as its longest (or `length`)."""
    T = length or max(len(ids[i]) for i in members)
    input_ids = torch.full((len(members), T), pad_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(members), T), dtype=torch.long)    # (B, T)
    token_type_ids = torch.zeros((len(members), T), dtype=torch.long) if types is not None else None
    for row, i in enumerate(members):
        n = len(ids[i])
        input_ids[row, :n] = torch.tensor(ids[i])
        attention_mask[row, :n] = 1
        if token_type_ids is not None:
            token_type_ids[row, :n] = torch.tensor(types[i])
    return Batch(input_ids, attention_mask, token_type_ids, torch.tensor(members, dtype=torch.long))


def make_batches(ds: TextDataset, tokenizer, *, max_length: int = 128, batch_size: int = 64,
                 bucket: bool = True, pad_to_max: bool = False) -> BatchList:
    """Tokenise once and cut into batches; bucketing sorts by length so each batch pads only to its longest."""
    if batch_size < 1 or max_length < 2:
        raise HeadroomError(f"Batch size and max length must be positive (got {batch_size} and {max_length}).")
    enc, cut = tokenize(ds, tokenizer, max_length)
    ids, types = enc["input_ids"], enc.get("token_type_ids")
    lengths = [len(x) for x in ids]
    order = sorted(range(len(ids)), key=lambda i: (lengths[i], i)) if bucket and not pad_to_max \
        else list(range(len(ids)))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = BatchList()
    out.num_truncated, out.num_examples, out.num_tokens = cut, len(ids), sum(lengths)
    for start in range(0, len(order), batch_size):
        batch = collate(ids, types, order[start:start + batch_size], pad_id, max_length if pad_to_max else None)
        out.append(batch)
        out.num_padded += batch.input_ids.numel()
    return out
