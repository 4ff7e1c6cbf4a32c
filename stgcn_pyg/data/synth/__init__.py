"""A synthetic pedestrian-tracklet generator: the project's built-in dataset.

It draws walking people (head, hair, torso with a clothing pattern, arms and
legs that swing with a gait cycle, shoes, optional bag or hat) seen by several
cameras, and writes the tracklets in the exact MARS layout (``bbox_train``,
``bbox_test``, ``info/*.txt`` and ``info/*.mat``) and/or the
DukeMTMC-VideoReID layout, so that the very same readers load them.

Why it is hard enough to be useful:

* identities come in *look-alike groups*: members share every attribute but
  one (a torso pattern, the trousers' or shoes' colour, a bag, the hair, the
  sleeve length, or the gait), so a global colour average confuses them and a
  model has to look at one body part, or at the motion across frames;
* cameras differ in colour cast, brightness, contrast, blur (resolution),
  noise, background, walking direction (side/front/back views) and scale;
* occluders (poles sliding through the box, parked cars, passers-by) hide
  parts of the body in some frames, and boxes are misaligned and jittered;
* the test split holds junk tracklets (pid -1: background, cut-off bodies)
  and distractors (pid 0: people seen once), as MARS does.

Every tracklet draws from its own random stream derived from
``(seed, tracklet)``, so the output is deterministic whatever the number of
worker processes. Default size (100 identities, 6 cameras) is written in well
under a minute.

Modules: ``attributes`` (random people and cameras), ``drawing``, ``plan``
(settings and who is seen where), ``writers`` (the two layouts on disk) and
``cache`` (generated once, on first use).
"""

from .cache import default_cache_dir, ensure_synthetic, synthetic_set_folder
from .drawing import render_tracklet
from .plan import SynthConfig, occlusion_summary, plan_synthetic
from .writers import generate_synthetic

__all__ = [
    "SynthConfig",
    "generate_synthetic",
    "ensure_synthetic",
    "synthetic_set_folder",
    "default_cache_dir",
    "render_tracklet",
    "plan_synthetic",
    "occlusion_summary",
]
