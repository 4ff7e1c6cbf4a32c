"""Graph layers of STGCN, reusable in any PyG model."""

from .affinity_conv import AffinityGCNConv, to_dense_affinity
from .dense import DenseAffinityGCN
from .functional import dense_affinity, dense_affinity_gcn, normalize_with_self_loops

__all__ = [
    "AffinityGCNConv",
    "DenseAffinityGCN",
    "to_dense_affinity",
    "dense_affinity",
    "dense_affinity_gcn",
    "normalize_with_self_loops",
]
