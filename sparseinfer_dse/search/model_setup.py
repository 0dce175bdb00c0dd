"""The model a search (or its verification) measures: loaded, its method chosen, calibrated, sparsified.

One function so that the search's workers and `verify` set the model up the same way: the same
method (as given, else sparseinfer where it applies), and the same calibrated thresholds and, for
rsparse, SVD factors (from the cache after the first worker computed them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from sparseinfer_dse.engine.methods import get_method
from sparseinfer_dse.engine.sparsify import SparsifiedModel, sparsify
from sparseinfer_dse.errors import OptionError
from sparseinfer_dse.eval.lowrank_cache import lowrank_factors
from sparseinfer_dse.eval.threshold_calibration import CalibrationSpec, calibrate
from sparseinfer_dse.machine import set_threads
from sparseinfer_dse.models.loading import LoadedModel, ModelSpec, load_model
from sparseinfer_dse.search.options import SearchOptions


@dataclass
class SearchModel:
    lm: LoadedModel
    handle: SparsifiedModel
    method: str

    @property
    def thresholds_key(self) -> Optional[str]:
        """The identity of the calibration the thresholds came from (None for sparseinfer)."""
        table = self.handle.tables.get(self.method)
        return None if table is None else table.calibration.get("key")


def load_search_model(opts: SearchOptions, say: Optional[Callable[..., None]] = None,
                      progress: bool = True) -> SearchModel:
    if opts.threads:
        set_threads(opts.threads)
    lm = load_model(ModelSpec(opts.model, opts.gguf_file, opts.device, opts.dtype, opts.decode_activation),
                    tokenizer=True)
    method = opts.method_for(lm.activation.is_sparse, lm.activation.kind)
    tables = []
    if get_method(method).calibrated:
        spec = CalibrationSpec(text=opts.calibration, data_dir=opts.data_dir)
        tables.append(calibrate(lm, method, spec, progress=progress, say=say))
    factors = None
    if get_method(method).ranked:
        grid, side = opts.grid_for(method), min(lm.mlps[0].d, lm.mlps[0].k)
        if grid.rank_high > side:
            raise OptionError("rank_range", f"{{rank_range}} goes up to {grid.rank_high}, above this model's "
                              f"MLP projections' smaller side ({side})")
        factors = lowrank_factors(lm, grid.rank_high, progress=progress, say=say)
    return SearchModel(lm, sparsify(lm, None, opts.backend, method=method, tables=tables, factors=factors), method)
