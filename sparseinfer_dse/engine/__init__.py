"""The engine: turns a transformers model into a SparseInfer model (decode sparse, prefill dense)."""

from sparseinfer_dse.engine.sparsify import SparsifiedModel, choose_backend, sparsify

__all__ = ["SparsifiedModel", "choose_backend", "sparsify"]
