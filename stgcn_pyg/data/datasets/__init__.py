"""Dataset readers: ``load_dataset(name, root)`` -> :class:`ReIDDataset`."""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError, DatasetError
from .base import PROTOCOLS, ReIDDataset
from .mars import load_mars

__all__ = ["load_dataset", "load_configured_dataset", "synthetic_options", "ReIDDataset", "DATASETS", "PROTOCOLS"]


def _synthetic(root, protocol="standard", **kwargs) -> ReIDDataset:
    from ..synth import ensure_synthetic

    kwargs.setdefault("create", False)  # reading writes nothing into a user's folder
    path = ensure_synthetic(root, **kwargs)
    ds = load_mars(path, protocol=protocol, name="synthetic")
    ds.notes.append("built-in synthetic pedestrians, MARS layout")
    return ds


def _loaders() -> dict:
    table = {"mars": load_mars, "synthetic": _synthetic}
    try:
        from .duke import load_duke

        table["dukemtmc-videoreid"] = load_duke
    except ImportError:  # pragma: no cover
        pass
    try:
        from .ilidsvid import load_ilidsvid
        from .prid import load_prid2011

        table["ilids-vid"] = load_ilidsvid
        table["prid2011"] = load_prid2011
    except ImportError:  # pragma: no cover
        pass
    try:
        from .folder import load_folder

        table["folder"] = load_folder
    except ImportError:  # pragma: no cover
        pass
    return table


_ALIASES = {"duke": "dukemtmc-videoreid", "dukemtmc": "dukemtmc-videoreid", "dukemtmc-vidreid": "dukemtmc-videoreid",
            "ilidsvid": "ilids-vid", "prid": "prid2011", "prid-2011": "prid2011", "synth": "synthetic"}

DATASETS = ("mars", "dukemtmc-videoreid", "ilids-vid", "prid2011", "folder", "synthetic")


def load_dataset(name: str, root=None, protocol: str = "standard", **kwargs) -> ReIDDataset:
    """Read dataset ``name`` from ``root``.

    Names: "mars", "dukemtmc-videoreid", "ilids-vid", "prid2011", "folder"
    and "synthetic" (the built-in set; ``root=None`` uses the cache folder and
    generates it on first use; a given ``root`` must hold a set, unless
    ``create=True``; keyword arguments go to
    :func:`~stgcn_pyg.data.ensure_synthetic`). ``protocol`` is "standard"
    (default) or "official" (MARS and the synthetic set; see the README).
    Other keyword arguments go to the reader (e.g. ``split_id`` for iLIDS-VID
    and PRID2011).
    """
    key = str(name).lower()
    key = _ALIASES.get(key, key)
    table = _loaders()
    if key not in table:
        raise DatasetError(f"unknown dataset {name!r}: choose one of {', '.join(sorted(table))}")
    if protocol not in PROTOCOLS:
        raise DatasetError(f"unknown evaluation protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if key != "synthetic" and root is None:
        raise DatasetError(f"dataset {key!r} needs a root folder (--root)")
    try:
        return table[key](root if root is None else Path(root), protocol=protocol, **kwargs)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise DatasetError(f"dataset {key!r}: {exc}") from None
        raise


def synthetic_options(data) -> dict:
    """The :class:`~stgcn_pyg.data.SynthConfig` fields that a config's ``data`` section sets."""
    return dict(num_ids=data.synthetic_ids, min_frames=data.synthetic_frames[0], max_frames=data.synthetic_frames[1],
                height=data.synthetic_image_size[0], width=data.synthetic_image_size[1],
                occlusion_prob=data.synthetic_occlusion, misalignment=data.synthetic_misalignment)


def load_configured_dataset(data, *, progress: bool = True, create: bool = False) -> ReIDDataset:
    """The dataset that a config's ``data`` section (:class:`~stgcn_pyg.config.DataConfig`) names.

    The synthetic set is generated on first use with the section's
    ``synthetic_*`` sizes into the cache when ``data.root`` is "", and into
    ``data.root`` only with ``create`` (training; reading writes nothing into a
    user's folder); any other dataset needs its root folder.
    """
    key = _ALIASES.get(data.dataset.lower(), data.dataset.lower())
    root = str(Path(data.root).expanduser()) if data.root else None
    kwargs = {}
    if key == "synthetic":
        kwargs = dict(synthetic_options(data), progress=progress, create=create)
    elif root is None:
        raise ConfigError(f"data.root: dataset {data.dataset!r} needs its root folder (--root DIR)")
    elif not Path(root).is_dir():
        raise DatasetError(f"{root}: dataset root folder not found (data.root / --root)")
    return load_dataset(key, root, protocol=data.protocol, **kwargs)
