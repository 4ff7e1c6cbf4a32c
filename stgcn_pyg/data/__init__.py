"""Tracklet data: graphs, dataset readers, the synthetic generator, samplers and loaders."""

from .tracklet import TrackletData, tracklet_batch

__all__ = ["TrackletData", "tracklet_batch"]
