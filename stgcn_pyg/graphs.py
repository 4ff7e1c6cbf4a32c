"""Graph topologies over the patch nodes of a tracklet.

Topologies are data: one TOML file per topology under the repository's
``graphs/`` folder (see graphs/README.md). Node ``t * P + p`` is stripe ``p``
of frame ``t``. :func:`build_edge_index` turns a topology and (T, P) into a
PyG ``edge_index`` (cached, so it is built once per shape).

:class:`TrackletGraph` is the one owner of a model's graphs: the stripe count
and the two topologies. The model builds one from its config; tracklets and
batches carry the one they were built from, so the model can tell at no cost
whether a batch's edges are its own.
"""

from __future__ import annotations

import functools
import operator
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ConfigError, TopologyError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "Topology",
    "topology_dirs",
    "available_topologies",
    "load_topology",
    "build_edge_index",
    "TrackletGraph",
    "tracklet_graph",
    "DEFAULT_TEMPORAL_TOPOLOGY",
    "DEFAULT_SPATIAL_TOPOLOGY",
    "DEFAULT_NUM_STRIPES",
]

DEFAULT_TEMPORAL_TOPOLOGY = "temporal-complete"
DEFAULT_SPATIAL_TOPOLOGY = "spatial-frame-complete"
DEFAULT_NUM_STRIPES = 4


def topology_dirs() -> list[Path]:
    """Folders searched for ``<name>.toml``, first match wins.

    ``$STGCN_GRAPHS_DIR`` (colon-separated), the checkout's ``graphs/`` (source
    and editable installs), then ``<prefix>/share/stgcn-pyg/graphs`` (wheels).
    """
    dirs = [Path(p) for p in os.environ.get("STGCN_GRAPHS_DIR", "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parent.parent / "graphs")
    dirs.append(Path(sys.prefix) / "share" / "stgcn-pyg" / "graphs")
    return dirs


def available_topologies() -> list[str]:
    names: set[str] = set()
    for d in topology_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


GapRule = tuple[str, frozenset[int] | int | None]


def _parse_gap(value: object, key: str, source: str) -> GapRule:
    if value == "any":
        return ("any", None)
    if isinstance(value, bool):
        pass
    elif isinstance(value, int) and value >= 0:
        return ("max", value)
    elif isinstance(value, list) and value and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        return ("set", frozenset(value))
    raise TopologyError(
        f"{source}: '{key}' must be \"any\", a non-negative integer (largest gap) "
        f"or a non-empty list of non-negative integers (exact gaps), got {value!r}"
    )


def _gap_allows(rule: GapRule, gap: torch.Tensor) -> torch.Tensor:
    kind, arg = rule
    if kind == "any":
        return torch.ones_like(gap, dtype=torch.bool)
    if kind == "max":
        return gap <= arg
    return torch.isin(gap, torch.tensor(sorted(arg), dtype=gap.dtype))


@dataclass(frozen=True)
class Topology:
    """Which patch nodes (frame t, stripe p) are linked.

    Two distinct nodes are linked when ``abs(t1 - t2)`` satisfies
    ``frame_gap`` and ``abs(p1 - p2)`` satisfies ``stripe_gap``.
    """

    name: str
    description: str
    frame_gap: GapRule
    stripe_gap: GapRule
    source: str = "<memory>"

    @classmethod
    def from_dict(cls, raw: dict, source: str) -> "Topology":
        known = {"name", "description", "frame_gap", "stripe_gap"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise TopologyError(f"{source}: unknown key(s) {unknown}; allowed: {sorted(known)}")
        missing = sorted({"name", "frame_gap", "stripe_gap"} - set(raw))
        if missing:
            raise TopologyError(f"{source}: missing key(s) {missing}")
        if not isinstance(raw["name"], str) or not raw["name"]:
            raise TopologyError(f"{source}: 'name' must be a non-empty string")
        return cls(
            name=raw["name"],
            description=str(raw.get("description", "")),
            frame_gap=_parse_gap(raw["frame_gap"], "frame_gap", source),
            stripe_gap=_parse_gap(raw["stripe_gap"], "stripe_gap", source),
            source=source,
        )

    def is_complete(self) -> bool:
        """True when every pair of distinct nodes is linked, for any (T, P)."""
        return self.frame_gap[0] == "any" and self.stripe_gap[0] == "any"

    def adjacency(self, T: int, P: int) -> torch.Tensor:
        """Boolean [N, N] adjacency without self-loops, N = T * P."""
        if T < 1 or P < 1:
            raise ValueError(f"T and P must be positive, got T={T}, P={P}")
        node = torch.arange(T * P)
        t, p = node // P, node % P
        frame_gap = (t[:, None] - t[None, :]).abs()
        stripe_gap = (p[:, None] - p[None, :]).abs()
        adj = _gap_allows(self.frame_gap, frame_gap) & _gap_allows(self.stripe_gap, stripe_gap)
        adj.fill_diagonal_(False)
        return adj


@functools.lru_cache(maxsize=None)
def _load_file(path: str) -> Topology:
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read topology file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{path}: malformed topology file ({exc})") from None
    return Topology.from_dict(raw, source=path)


def load_topology(name_or_path: str | os.PathLike | Topology) -> Topology:
    """Load a topology by name (``temporal-complete``) or by a ``.toml`` path."""
    if isinstance(name_or_path, Topology):
        return name_or_path
    text = os.fspath(name_or_path)
    if text.endswith(".toml") or os.sep in text:
        return _load_file(str(Path(text).resolve()))
    for d in topology_dirs():
        candidate = d / f"{text}.toml"
        if candidate.is_file():
            return _load_file(str(candidate.resolve()))
    raise TopologyError(
        f"unknown topology {text!r}; available: {', '.join(available_topologies()) or 'none'} "
        f"(searched {', '.join(str(d) for d in topology_dirs())})"
    )


@functools.lru_cache(maxsize=256)
def _edge_index_cached(topology: Topology, T: int, P: int) -> torch.Tensor:
    dst, src = topology.adjacency(T, P).nonzero(as_tuple=True)
    # PyG convention: row 0 = source j, row 1 = target i; sorted by target.
    return torch.stack([src, dst]).contiguous()


def build_edge_index(topology: str | os.PathLike | Topology, T: int, P: int) -> torch.Tensor:
    """``edge_index`` [2, E] of a topology over T*P patch nodes (a cached tensor; do not modify)."""
    return _edge_index_cached(load_topology(topology), int(T), int(P))


@dataclass(frozen=True, repr=False)
class TrackletGraph:
    """The temporal and spatial graphs over the ``T * num_stripes`` patch nodes of a tracklet.

    Built once (by the model from its config, by a loader from the same
    values) and shared: :meth:`edges` is built once per topology, T and
    stripe count, and a pickled graph (a tracklet coming back from a loader
    worker) unpickles to the same object, so comparing a batch's graphs with
    the model's is an identity check.
    """

    temporal: Topology
    spatial: Topology
    num_stripes: int

    def edges(self, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(temporal_edge_index, spatial_edge_index)`` of a T-frame tracklet (cached tensors; do not modify)."""
        return (build_edge_index(self.temporal, T, self.num_stripes),
                build_edge_index(self.spatial, T, self.num_stripes))

    def describe(self) -> str:
        return (f"{self.num_stripes} stripes, temporal graph {self.temporal.name!r}, "
                f"spatial graph {self.spatial.name!r}")

    def __repr__(self) -> str:
        return f"TrackletGraph({self.describe()})"

    def __reduce__(self):
        return _interned_graph, (self.temporal, self.spatial, self.num_stripes)


@functools.lru_cache(maxsize=64)
def _interned_graph(temporal: Topology, spatial: Topology, num_stripes: int) -> TrackletGraph:
    return TrackletGraph(temporal, spatial, num_stripes)


def tracklet_graph(
    num_stripes: int = DEFAULT_NUM_STRIPES,
    temporal: str | os.PathLike | Topology = DEFAULT_TEMPORAL_TOPOLOGY,
    spatial: str | os.PathLike | Topology = DEFAULT_SPATIAL_TOPOLOGY,
) -> TrackletGraph:
    """The :class:`TrackletGraph` of a stripe count and two topologies (names, ``.toml`` paths or objects).

    Equal arguments give the same object.
    """
    try:
        stripes = operator.index(num_stripes)  # ints of any kind, not floats
    except TypeError:
        stripes = 0
    if isinstance(num_stripes, bool) or stripes < 1:
        raise ConfigError(f"num_stripes must be a positive integer, got {num_stripes!r}")
    return _interned_graph(load_topology(temporal), load_topology(spatial), stripes)
