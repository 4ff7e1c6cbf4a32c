"""Graph layers of STGCN, reusable in any PyG model."""

from .affinity_conv import AffinityGCNConv, to_dense_affinity
from .dense import DenseAffinityGCN
from .functional import dense_affinity, dense_affinity_gcn, normalize_with_self_loops
from .norm import affinity_dtype, affinity_norm

__all__ = [
    "AffinityGCNConv",
    "DenseAffinityGCN",
    "affinity_norm",
    "affinity_dtype",
    "to_dense_affinity",
    "dense_affinity",
    "dense_affinity_gcn",
    "normalize_with_self_loops",
]
