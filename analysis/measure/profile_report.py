"""The profile's report: one row per (component, layer) — parameters, bytes, FLOPs, measured ms.

Parameters and bytes are counted as `size.size_report` counts them, FLOPs as `flops.count_flops`
counts them (both per `flops.COMPONENTS`), and milliseconds are measured (`profile.py`). The
report sums them per component, sets the simulated recipe beside the materialized model, and
turns into a table (`to_frame`, `by_component`) or JSON (`to_dict`) at the boundary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from analysis.core.adapters import Adapter
from analysis.core.recipe import Recipe
from analysis.measure.flops import COMPONENTS, count_flops, count_parameters


@dataclass
class ComponentRow:
    """One component of one layer (layer None: embeddings, classifier)."""

    component: str  # one of flops.COMPONENTS
    layer: int | None
    params: int  # counted
    bytes: float  # counted at the recipe's bits, scales included
    flops: int  # counted, 2 per multiply-add
    ms: float  # measured, median over repeats


@dataclass
class ProfileReport:
    """Where parameters, bytes, FLOPs and time go in one model under one recipe, on one device."""

    model: str
    mode: str  # "simulated" (Headroom's forward, the recipe applied) or "materialized" (the HF model)
    recipe: dict
    device: str
    threads: int
    dtype: str
    batch_size: int
    seq_len: int
    repeats: int
    forward_ms: float  # the whole forward, timed without laps or hooks (median)
    rows: list[ComponentRow]
    peak_memory_mb: float | None = None  # CUDA only: peak allocated during the forward
    load_average: float | None = None  # CPU only: 1-minute load average when measured (others' jobs slow us)
    inferred_ms: float = 0.0  # time assigned by subtraction (whole − measured pieces), not measured per piece
    materialized: "ProfileReport | None" = None
    note: str = ""
    how: str = ""

    @property
    def components_ms(self) -> float:
        return sum(r.ms for r in self.rows)

    @property
    def coverage(self) -> float:
        """Sum of the separately measured per-component times over the whole forward's time."""
        return (self.components_ms - self.inferred_ms) / self.forward_ms if self.forward_ms else float("nan")

    def to_frame(self):
        import pandas as pd

        df = pd.DataFrame([asdict(r) for r in self.rows])
        df["layer"] = df["layer"].astype("Int64")
        df["share_of_time"] = df["ms"] / max(df["ms"].sum(), 1e-12)
        df["share_of_flops"] = df["flops"] / max(df["flops"].sum(), 1)
        return df

    def by_component(self):
        """One row per component, summed over layers, in data-flow order."""
        df = self.to_frame().groupby("component", sort=False)[["params", "bytes", "flops", "ms"]].sum()
        df = df.reindex([c for c in COMPONENTS if c in df.index])
        df["share_of_params"] = df["params"] / max(df["params"].sum(), 1)
        df["share_of_flops"] = df["flops"] / max(df["flops"].sum(), 1)
        df["share_of_time"] = df["ms"] / max(df["ms"].sum(), 1e-12)
        df["gflops_per_s"] = df["flops"] / (df["ms"].clip(lower=1e-9) * 1e6)
        return df.reset_index()

    def side_by_side(self):
        """Per component: simulated recipe vs the materialized model (FLOPs and measured ms)."""
        a = self.by_component().set_index("component")[["flops", "ms"]].add_suffix("_simulated")
        if self.materialized is None:
            return a.reset_index()
        b = self.materialized.by_component().set_index("component")[["flops", "ms"]].add_suffix("_materialized")
        return a.join(b, how="outer").reindex([c for c in COMPONENTS if c in a.index or c in b.index]).reset_index()

    def header(self) -> dict:
        return {"model": self.model, "mode": self.mode, "device": self.device, "threads": self.threads,
                "dtype": self.dtype, "batch_size": self.batch_size, "seq_len": self.seq_len,
                "repeats": self.repeats, "forward_ms": round(self.forward_ms, 3),
                "components_ms": round(self.components_ms, 3), "coverage": round(self.coverage, 3),
                "peak_memory_mb": self.peak_memory_mb, "load_average": self.load_average, "how": self.how, "note": self.note}

    def to_dict(self) -> dict:
        d = self.header()
        d["recipe"] = self.recipe
        d["by_component"] = self.by_component().round(6).to_dict(orient="records")
        d["rows"] = [asdict(r) for r in self.rows]
        if self.materialized is not None:
            d["materialized"] = self.materialized.to_dict()
            d["side_by_side"] = self.side_by_side().round(4).to_dict(orient="records")
        return d


def component_rows(adapter: Adapter, recipe: Recipe, batch_size: int, seq_len: int, ms: dict) -> list[ComponentRow]:
    """Counted parameters/bytes/FLOPs per (component, layer), with the measured `ms` beside them."""
    params = {(p.component, p.layer): p for p in count_parameters(adapter, recipe)}
    out = []
    for f in count_flops(adapter, recipe, batch_size, seq_len):
        p = params.get((f.component, f.layer))
        out.append(ComponentRow(f.component, f.layer, p.params if p else 0, p.bytes if p else 0.0,
                                f.total, ms.get((f.component, f.layer), 0.0)))
    return out
