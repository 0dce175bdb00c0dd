"""SparseInfer kernels (import name ``sparseinfer_kernels``).

Kept free of heavy imports: transformers may import this folder as ``kernels`` when the
repository root is on ``sys.path``. Import backends from their own modules.
"""
