"""The base of the deploy wrappers: a model whose ``encode`` runs another way.

Its own module because both :mod:`.inference` (eager settings) and
:mod:`.engine` (onnxruntime) subclass it, and they import each other's names lazily.
"""

from __future__ import annotations

__all__ = ["ModelWrapper"]


class ModelWrapper:
    """A model with its ``encode`` replaced; every other attribute, and ``eval``/``train``/``to``, is the model's."""

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        # Only reached for names a wrapper lacks: temporal_affinity, feature_dims, cfg, training ...
        model = self.__dict__.get("model")
        if model is None:  # not initialised yet (copy, pickle): nothing to delegate to
            raise AttributeError(name)
        return getattr(model, name)

    def eval(self):
        self.model.eval()
        return self

    def train(self, mode: bool = True):
        self.model.train(mode)
        return self

    def to(self, device):
        self.model.to(device)
        return self
