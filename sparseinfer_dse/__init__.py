"""sparseinfer-dse: search per-layer SparseInfer alpha profiles for speed and accuracy."""

__version__ = "0.1.0"
