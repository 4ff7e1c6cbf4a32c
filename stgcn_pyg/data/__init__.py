"""Tracklet data: graphs, dataset readers, the synthetic generator, samplers and loaders."""

from .tracklet import TrackletData, tracklet_batch
from .datasets import DATASETS, PROTOCOLS, ReIDDataset, load_configured_dataset, load_dataset
from .synth import SynthConfig, default_cache_dir, ensure_synthetic, generate_synthetic
from .sampling import RandomIdentitySampler, all_clips, evenly, restricted_random, strided_clips
from .transforms import CorruptFrameError, TrackletTransform, read_frame
from .loader import build_test_loader, build_train_loader
from .misalignment import BoxMisalignment, TestMisalignment, misalign_frame, resample_box
from .occlusion import TestOcclusion

__all__ = [
    "TrackletData", "tracklet_batch",
    "load_dataset", "load_configured_dataset", "ReIDDataset", "DATASETS", "PROTOCOLS",
    "ensure_synthetic", "generate_synthetic", "SynthConfig", "default_cache_dir",
    "RandomIdentitySampler", "restricted_random", "evenly", "all_clips", "strided_clips",
    "TrackletTransform", "read_frame", "CorruptFrameError",
    "build_train_loader", "build_test_loader",
    "TestOcclusion", "TestMisalignment", "misalign_frame", "resample_box", "BoxMisalignment",
]
