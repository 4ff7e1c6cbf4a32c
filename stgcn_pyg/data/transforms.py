"""Frame decoding (TorchCodec, else torchvision.io) and tracklet transforms (torchvision.transforms.v2).

A tracklet is transformed as a whole: one resize to ``image_size`` (batched
when its frames share a size), one horizontal flip decision for all its
frames (a person does not turn around between frames), ImageNet
normalisation, and, as an option, random erasing per frame. Randomness comes
from a ``torch.Generator`` the caller seeds, so a batch is reproducible
whatever the number of loader workers.

Decoded frames are [3, H, W] views of height x width x RGB memory (what the
decoders write); uint8 frames stay in that layout (``torch.channels_last``
for a batch), where stacking is a copy and the resize takes its fast path;
normalised float frames come out contiguous.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings

import torch
import torchvision.transforms.v2.functional as F
from torchvision.io import ImageReadMode, decode_image

from ..errors import DatasetError

_log = logging.getLogger("stgcn_pyg.data")  # the data loaders' logger

try:  # TorchCodec: torchvision's successor for decoding (same pixels, ~10% faster); optional
    from torchcodec.decoders import decode_image as _tc_decode_image, decode_jpeg as _tc_decode_jpeg
    DECODER = "torchcodec"
except Exception:  # not installed, or built for another torch
    _tc_decode_image = _tc_decode_jpeg = None
    DECODER = "torchvision"

__all__ = ["CorruptFrameError", "read_frame", "read_bytes", "decode_frame", "is_complete_jpeg", "stack_frames",
           "TrackletTransform", "normalize_frames", "erasing_params", "IMAGENET_MEAN", "IMAGENET_STD",
           "DEFAULT_IMAGE_SIZE", "DECODER"]

# torchvision 0.29 flags its decoders as deprecated in favour of TorchCodec, on every call;
# they remain the decoders this project uses (CPU and GPU), so the notice is silenced.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)

# What frames become: the paper's size ([height, width]; the default of data.image_size and of the
# loaders) and the ImageNet statistics the pretrained backbones expect.
DEFAULT_IMAGE_SIZE = (256, 128)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CorruptFrameError(DatasetError):
    """An image file that is missing, truncated or not an image."""


def _clean(msg: str) -> str:
    # torchvision prefixes its messages with "function, /path/to/file.cpp:123, ".
    msg = re.sub(r"^[\w_]+, [^,]*\.cpp:\d+, ", "", str(msg)).strip()
    return msg.split(" Supported formats are")[0]  # TorchCodec's advice on its own API: not the user's concern


def read_bytes(path: str) -> torch.Tensor:
    """A file's bytes as a uint8 tensor; CorruptFrameError names a missing or unreadable file."""
    try:
        with open(path, "rb", buffering=0) as f:  # one read into a buffer of the file's size
            data = bytearray(os.fstat(f.fileno()).st_size)
            got = f.readinto(data)
    except FileNotFoundError:
        raise CorruptFrameError(f"image not found: {path}") from None
    except OSError as exc:
        raise CorruptFrameError(f"cannot read image file: {path} ({exc.strerror or exc})") from None
    return torch.frombuffer(data[:got] if got < len(data) else data, dtype=torch.uint8) if got else \
        torch.empty(0, dtype=torch.uint8)


def decode_frame(data: torch.Tensor, path: str) -> torch.Tensor:
    """Decode an image file's bytes to uint8 RGB [3, H, W]; CorruptFrameError names ``path``."""
    try:
        if _tc_decode_image is not None:
            # A JPEG straight to its decoder: format detection costs a tenth of a small frame's decode.
            jpeg = data[:2].numpy().tobytes() == b"\xff\xd8"
            return (_tc_decode_jpeg if jpeg else _tc_decode_image)(data, mode="RGB")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_image(data, mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError) as exc:
        msg = _clean(exc)
        if "truncated" in msg or "incomplete" in msg:
            raise CorruptFrameError(f"truncated image file: {path} ({msg})") from None
        raise CorruptFrameError(f"corrupt or unsupported image file: {path} ({msg})") from None


def read_frame(path: str) -> torch.Tensor:
    """Decode one image to a uint8 RGB tensor [3, H, W]; CorruptFrameError names the file."""
    return decode_frame(read_bytes(path), path)


def load_tracklet_frames(paths: list[str], indices, read=read_frame) -> tuple[list[torch.Tensor], list[str]]:
    """Decode ``paths[i]`` for i in ``indices`` (each distinct frame once, by ``read``).

    A frame that cannot be decoded is replaced by the nearest readable frame
    of the tracklet; returns the frames and the paths that were skipped.
    """
    cache: dict[int, torch.Tensor | None] = {}
    skipped: list[str] = []

    def get(i: int):
        if i not in cache:
            try:
                cache[i] = read(paths[i])
            except CorruptFrameError as exc:
                cache[i] = None
                skipped.append(paths[i])
                # The logger, not warnings.warn: that would print this source line after the message.
                _log.warning("skipping a frame: %s", exc)
        return cache[i]

    out = []
    for i in indices:
        i = int(i)
        img = get(i)
        if img is None:
            # Nearest readable frame, searching outwards in time.
            for d in range(1, len(paths)):
                for j in (i - d, i + d):
                    if 0 <= j < len(paths) and get(j) is not None:
                        img = cache[j]
                        break
                if img is not None:
                    break
            if img is None:
                raise DatasetError(f"no readable frame in the tracklet of {paths[0]} ({len(paths)} frames)")
        out.append(img)
    return out, skipped


def is_complete_jpeg(data: torch.Tensor) -> bool:
    """Whether ``data`` starts and ends as a JPEG does (SOI marker; EOI within its last 32 bytes, as some
    writers pad): what a GPU batch decode is given."""
    head, tail = data[:2].numpy().tobytes(), data[-32:].numpy().tobytes()
    return data.numel() > 4 and head == b"\xff\xd8" and b"\xff\xd9" in tail


def stack_frames(frames: list[torch.Tensor]) -> torch.Tensor:
    """Frames [3, h, w] of one size -> uint8 [T, 3, h, w] in channels_last (a copy, no transposition)."""
    h, w = frames[0].shape[-2:]
    out = torch.empty(len(frames), h, w, 3, dtype=frames[0].dtype, device=frames[0].device)
    for t, f in enumerate(frames):
        out[t].copy_(f.permute(1, 2, 0))
    return out.permute(0, 3, 1, 2)


def erasing_params(T: int, size: tuple[int, int], prob: float, generator: torch.Generator | None) -> torch.Tensor:
    """Random-erasing rectangles for ``T`` frames: LongTensor [T, 4] of (top, left, height, width).

    A frame is erased with probability ``prob`` (height 0 = untouched); area
    2-40 % of the image, aspect ratio 0.3-3.3 (log-uniform), as in Zhong et
    al. 2020. Drawn on the CPU so that the erasing can run anywhere.
    """
    H, W = size
    out = torch.zeros(T, 4, dtype=torch.long)
    for t in range(T):
        if torch.rand((), generator=generator).item() >= prob:
            continue
        for _ in range(10):
            u = torch.rand(4, generator=generator).tolist()
            area = H * W * (0.02 + 0.38 * u[0])
            aspect = math.exp(math.log(0.3) + (math.log(1 / 0.3) - math.log(0.3)) * u[1])
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if 0 < h < H and 0 < w < W:
                out[t] = torch.tensor([int(u[2] * (H - h + 1)), int(u[3] * (W - w + 1)), h, w])
                break
    return out


def normalize_frames(x: torch.Tensor, erase: torch.Tensor | None = None, mean=IMAGENET_MEAN,
                     std=IMAGENET_STD, memory_format=torch.contiguous_format) -> torch.Tensor:
    """uint8 frames [N, 3, H, W] -> float, ImageNet-normalised, with rectangles ``erase`` [N, 4] set to 0.

    Runs on whatever device ``x`` is on (the training loader can hand uint8
    frames to the GPU, a quarter of the float32 bytes, and normalise there).
    The result is contiguous unless ``memory_format`` says otherwise.
    """
    x = x.to(torch.float32, memory_format=memory_format, copy=True)
    y = F.normalize(x.div_(255.0), list(mean), list(std), inplace=True)
    if erase is not None and bool((erase[:, 2] > 0).any()):
        erase = erase.to(y.device)
        H, W = y.shape[-2:]
        rows = torch.arange(H, device=y.device).view(1, H, 1)
        cols = torch.arange(W, device=y.device).view(1, 1, W)
        top, left, h, w = (erase[:, k].view(-1, 1, 1) for k in range(4))
        mask = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
        y = y.masked_fill(mask.unsqueeze(1), 0.0)
    return y


class TrackletTransform:
    """uint8 frames (list of [3, h, w]) -> float [T, 3, H, W], normalised.

    ``train=True`` adds the random horizontal flip (``flip_prob``) and, when
    ``random_erasing`` is set, erases a random rectangle of each frame with
    probability ``erasing_prob`` (see :func:`erasing_params`; erased pixels
    are 0, the normalised mean). :meth:`geometric` is the uint8 part alone
    (resize and flip), for pipelines that normalise later on the GPU.
    """

    def __init__(self, image_size=DEFAULT_IMAGE_SIZE, train: bool = False, flip_prob: float = 0.5,
                 random_erasing: bool = False, erasing_prob: float = 0.5,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.size = (int(image_size[0]), int(image_size[1]))
        self.train = train
        self.flip_prob = flip_prob
        self.random_erasing = random_erasing
        self.erasing_prob = erasing_prob
        self.mean, self.std = list(mean), list(std)

    def resize(self, frames: list[torch.Tensor]) -> torch.Tensor:
        """uint8 frames -> [T, 3, H, W] (channels_last): one resize when they share a size."""
        if len({tuple(f.shape) for f in frames}) == 1:
            x = stack_frames(frames)
            return x if x.shape[-2:] == self.size else F.resize(x, list(self.size), antialias=True)
        return stack_frames([f if tuple(f.shape[-2:]) == self.size
                             else F.resize(f.unsqueeze(0), list(self.size), antialias=True)[0] for f in frames])

    def geometric(self, frames: list[torch.Tensor], generator: torch.Generator | None = None):
        """Resize and (training) flip: ``(uint8 [T, 3, H, W], erase [T, 4] or None)``."""
        x = self.resize(frames)
        if self.train and torch.rand((), generator=generator).item() < self.flip_prob:
            x = F.horizontal_flip(x)
        erase = None
        if self.train and self.random_erasing:
            erase = erasing_params(x.size(0), self.size, self.erasing_prob, generator)
        return x, erase

    def __call__(self, frames: list[torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        x, erase = self.geometric(frames, generator)
        return normalize_frames(x, erase, self.mean, self.std)
