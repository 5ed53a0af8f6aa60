"""Which examples, under which label numbers: stratified subsets and aligning data labels to a model's.

`stratified_subset` keeps a deterministic share of every class (the `limit` of `load_dataset`);
`align_labels` renumbers a dataset's labels to the model's `id2label`, by name or by integer (and warns,
in the dataset's `warnings`, when a model with unnamed LABEL_k classes is matched by sorted order).
"""

from dataclasses import replace

import numpy as np

from analysis.errors import HeadroomError
from analysis.io.text_dataset import TextDataset


def stratified_subset(ds: TextDataset, limit: int, seed: int = 0) -> TextDataset:
    """Keep `limit` examples, each label in proportion to its share, chosen by `seed`, in original order."""
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise HeadroomError(f"The example limit must be a positive whole number, not {limit!r}.")
    if limit >= len(ds):
        return ds
    order = np.random.default_rng(seed).permutation(len(ds))  # one shuffle drives every class's pick
    if ds.labels is None:
        keep = order[:limit]
    else:
        labels = np.asarray(ds.labels)[order]
        classes, counts = np.unique(labels, return_counts=True)
        exact = limit * counts / len(ds)
        quota = np.floor(exact).astype(int)
        # largest remainder: the classes that lost most to rounding get the left-over places
        for i in np.argsort(-(exact - quota), kind="stable")[: limit - quota.sum()]:
            quota[i] += 1
        keep = np.concatenate([order[labels == c][:q] for c, q in zip(classes, quota)])
    keep = np.sort(keep).tolist()
    return replace(ds, texts=[ds.texts[i] for i in keep],
                   text_pairs=[ds.text_pairs[i] for i in keep] if ds.text_pairs is not None else None,
                   labels=[ds.labels[i] for i in keep] if ds.labels is not None else None,
                   indices=[ds.indices[i] for i in keep])


def align_labels(ds: TextDataset, id2label: dict[int, str]) -> TextDataset:
    """Renumber the dataset's labels to the model's label ids, matching names (case-insensitive) or integers."""
    id2label = {int(i): str(n) for i, n in id2label.items()}
    model_names = [id2label.get(i, f"LABEL_{i}") for i in range(max(id2label) + 1)] if id2label else []
    if ds.labels is None:
        return replace(ds, label_names=model_names)
    warnings = list(ds.warnings)
    by_name = {n.lower(): i for i, n in enumerate(model_names)}
    data_names = [n.lower() for n in ds.label_names]
    used = sorted(set(ds.labels))
    if all(data_names[l] in by_name for l in used):
        mapping = {l: by_name[data_names[l]] for l in used}
    elif all(n.startswith("label_") and n[6:].isdigit() for n in by_name) or \
            all(data_names[l].isdigit() for l in used):
        as_int = {l: int(data_names[l]) if data_names[l].isdigit() else l for l in used}
        outside = [ds.label_names[l] for l in used if not 0 <= as_int[l] < len(model_names)]
        if outside:
            raise HeadroomError(f"The data has labels {', '.join(outside[:5])} but the model has only "
                                f"{len(model_names)} classes; pick data made for this model.")
        mapping = as_int
        by_order = [l for l in used if not data_names[l].isdigit()]
        if by_order:
            pairs = ", ".join(f"{ds.label_names[l]} -> {model_names[mapping[l]]}" for l in by_order[:4])
            warnings = warnings + [
                f"The model's labels have no names (LABEL_0 ...), so the data's labels were matched to them by "
                f"sorted order ({pairs}{' ...' if len(by_order) > 4 else ''}); check that this is the order the "
                f"model was trained with."]
    else:
        unknown = [ds.label_names[l] for l in used if data_names[l] not in by_name]
        raise HeadroomError(f"The model does not know the data's labels {', '.join(unknown[:5])}"
                            f"{' ...' if len(unknown) > 5 else ''} (it knows {', '.join(model_names[:5])}"
                            f"{' ...' if len(model_names) > 5 else ''}); pick data made for this model.")
    return replace(ds, labels=[mapping[l] for l in ds.labels], label_names=model_names, warnings=warnings)
