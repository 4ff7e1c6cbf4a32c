"""Train/test loaders: batch shapes, graph offsets, frame content, determinism, corrupt frames."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from stgcn_pyg.data import (CorruptFrameError, TrackletTransform, build_test_loader, build_train_loader, strided_clips,
                            load_dataset, read_frame)
from stgcn_pyg.data.transforms import DECODER, IMAGENET_MEAN, IMAGENET_STD
from stgcn_pyg.errors import DatasetError
from stgcn_pyg.graphs import build_edge_index

from data_fixtures import MARS_TEST, frame_color, write_image, write_mars

SIZE = (16, 8)


@pytest.fixture(scope="module")
def mars(tmp_path_factory):
    return load_dataset("mars", write_mars(tmp_path_factory.mktemp("mars")))


def _pixels(frames):
    """Back to 0..255 colours, one per frame (the fixture images are uniform)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((frames * std + mean) * 255).mean(dim=(2, 3))


def _train_loader(df, **kw):
    args = dict(seq_len=4, num_ids=2, num_instances=2, image_size=SIZE, num_stripes=2, seed=0)
    args.update(kw)
    return build_train_loader(df, **args)


def test_train_batch_shapes_labels_and_graph_offsets(mars):
    loader = _train_loader(mars.train)
    assert len(loader) == 1 and loader.num_classes == 2  # groups of 2 tracklets: pid 1 one, pid 3 one -> 2 // num_ids=2
    batch = next(iter(loader))
    B, T, P = 4, 4, 2
    assert batch.num_graphs == B
    assert batch.frames.shape == (B * T, 3, *SIZE)
    assert batch.pid.shape == batch.camid.shape == batch.label.shape == (B,)
    # Labels relabel pids 1, 3 -> 0, 1; num_instances=2 consecutive items share an identity.
    assert batch.label.tolist() == [{1: 0, 3: 1}[p] for p in batch.pid.tolist()]
    assert batch.pid[0] == batch.pid[1] and batch.pid[2] == batch.pid[3] and batch.pid[0] != batch.pid[2]
    for key, topo in (("temporal_edge_index", "temporal-complete"), ("spatial_edge_index", "spatial-frame-complete")):
        single = build_edge_index(topo, T, P)
        ei = getattr(batch, key)
        assert ei.shape == (2, B * single.size(1))
        for g in range(B):
            part = ei[:, g * single.size(1):(g + 1) * single.size(1)]
            assert torch.equal(part, single + g * T * P)
    assert batch.num_frames.tolist() == [T] * B and batch.num_stripes.tolist() == [P] * B
    assert batch.graph == [loader.dataset.graph] * B and loader.dataset.graph.num_stripes == P
    # Every frame comes from a tracklet of the batch item's identity and camera.
    colours = _pixels(batch.frames).view(B, T, 3)
    for b in range(B):
        pid, cam = int(batch.pid[b]), int(batch.camid[b])
        assert torch.allclose(colours[b, :, 0], torch.full((T,), float(frame_color(pid, cam, 1, 0)[0])), atol=4)


def test_train_loader_is_deterministic_and_reshuffles(mars):
    def epoch(loader, e):
        loader.set_epoch(e)
        return [(b.pid.clone(), b.frames.clone(), b.graph) for b in loader]

    a, b = _train_loader(mars.train), _train_loader(mars.train)
    threads = torch.get_num_threads()
    ea, eb = epoch(a, 0), epoch(b, 0)
    assert torch.get_num_threads() == threads  # in-process loading runs single-threaded, then restores
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(ea, eb))
    e1 = epoch(a, 1)
    assert any(not torch.equal(x[1], y[1]) for x, y in zip(ea, e1))
    # The same batches come out of worker processes.
    w = _train_loader(mars.train, num_workers=1)
    ew = epoch(w, 0)
    assert all(torch.equal(x[1], y[1]) for x, y in zip(ea, ew))
    # The loader's one graph comes back from the worker as the same object (the model's check is by identity).
    assert all(g is w.dataset.graph is a.dataset.graph for *_, graphs in ea + ew for g in graphs)


def test_random_erasing_and_flip():
    frames = [torch.full((3, 16, 8), 200, dtype=torch.uint8) for _ in range(6)]
    t = TrackletTransform(SIZE, train=True, random_erasing=True, erasing_prob=1.0)
    x = t(frames, torch.Generator().manual_seed(0))
    assert x.shape == (6, 3, *SIZE)
    erased = (x == 0).all(dim=1)  # erased pixels are 0 in every channel
    assert all(erased[i].any() for i in range(6))
    assert not erased.all()
    plain = TrackletTransform(SIZE, train=False)(frames)
    assert not (plain == 0).any()
    # A flip applies to the whole tracklet: frames with a left-bright half all flip together.
    half = torch.zeros(3, 16, 8, dtype=torch.uint8)
    half[:, :, :4] = 255
    flips = set()
    for s in range(20):
        y = TrackletTransform(SIZE, train=True)([half] * 4, torch.Generator().manual_seed(s))
        left = (y[:, 0, :, :4].mean(dim=(1, 2)) > y[:, 0, :, 4:].mean(dim=(1, 2))).tolist()
        assert len(set(left)) == 1
        flips.add(left[0])
    assert flips == {True, False}


def test_resize_to_image_size(tmp_path):
    write_image(tmp_path / "a.jpg", size=(30, 50))
    write_image(tmp_path / "b.jpg", size=(8, 16))
    x = TrackletTransform((32, 16))([read_frame(str(tmp_path / "a.jpg")), read_frame(str(tmp_path / "b.jpg"))])
    assert x.shape == (2, 3, 32, 16)


def test_test_loader_all_and_evenly(mars):
    T = 2
    loader = build_test_loader(mars.gallery, seq_len=T, mode="all", image_size=SIZE, batch_size=3)
    n = mars.gallery.num_frames.tolist()
    assert loader.num_clips == sum(-(-k // T) for k in n) and loader.num_tracklets == len(n)
    idx, clips = [], []
    for c, i in loader:
        assert c.shape[1:] == (T, 3, *SIZE) and c.shape[0] <= 3
        idx.append(i)
        clips.append(c)
    idx, clips = torch.cat(idx), torch.cat(clips)
    assert idx.tolist() == [t for t, k in enumerate(n) for _ in range(-(-k // T))]
    # Clips cover the frames in order; the last one is padded by cycling (blue = 10 * frame index).
    blue = _pixels(clips.flatten(0, 1))[:, 2].view(-1, T)
    t0 = [b for b, t in zip(blue.tolist(), idx.tolist()) if t == 0]  # first gallery tracklet: 2 frames
    first_len = n[0]
    expected = [[10 * (c * T + j) if c * T + j < first_len else 10 * (c * T) for j in range(T)]
                for c in range(-(-first_len // T))]
    assert np.allclose(t0, expected, atol=4)
    ev = build_test_loader(mars.query, seq_len=4, mode="evenly", image_size=SIZE, batch_size=8)
    (c, i), = list(ev)
    assert c.shape == (len(mars.query), 4, 3, *SIZE) and i.tolist() == list(range(len(mars.query)))
    with pytest.raises(Exception, match="unknown test sampling mode 'dense'"):
        build_test_loader(mars.query, mode="dense")


def test_test_loader_strided_spreads_each_clip_over_the_tracklet(mars):
    T = 2
    loader = build_test_loader(mars.gallery, seq_len=T, mode="strided", image_size=SIZE, batch_size=3)
    n = mars.gallery.num_frames.tolist()
    batches = list(loader)
    idx, clips = torch.cat([i for _, i in batches]), torch.cat([c for c, _ in batches])
    assert idx.tolist() == [t for t, k in enumerate(n) for _ in range(len(strided_clips(k, T)))]
    blue = _pixels(clips.flatten(0, 1))[:, 2].view(-1, T)  # blue = 10 * frame index
    for t, k in enumerate(n):
        got = blue[idx == t].tolist()
        assert np.allclose(got, [[10 * f for f in c] for c in strided_clips(k, T)], atol=4)


def test_frame_errors_name_the_file(tmp_path):
    good = tmp_path / "good.jpg"
    write_image(good)
    (tmp_path / "trunc.jpg").write_bytes(good.read_bytes()[:200])
    (tmp_path / "junk.jpg").write_bytes(b"hello, not an image")
    with pytest.raises(CorruptFrameError, match=r"truncated image file: .*trunc.jpg"):
        read_frame(str(tmp_path / "trunc.jpg"))
    with pytest.raises(CorruptFrameError, match=r"corrupt or unsupported image file: .*junk.jpg"):
        read_frame(str(tmp_path / "junk.jpg"))
    with pytest.raises(CorruptFrameError, match=r"image not found: .*missing.jpg"):
        read_frame(str(tmp_path / "missing.jpg"))
    with pytest.raises(CorruptFrameError) as exc:
        read_frame(str(tmp_path / "junk.jpg"))
    said = str(exc.value)
    assert said.startswith(f"corrupt or unsupported image file: {tmp_path / 'junk.jpg'} (") and "\n" not in said
    if DECODER == "torchcodec":  # its advice on its own API is cut
        assert said.endswith("(Unsupported or unrecognized image format.)")
    with pytest.raises(CorruptFrameError, match=r"cannot read image file: .* \(Is a directory\)"):
        read_frame(str(tmp_path))
    assert issubclass(CorruptFrameError, DatasetError)


def test_corrupt_frame_in_training_is_skipped_with_a_warning_and_counted(tmp_path, caplog):
    ds = load_dataset("mars", write_mars(tmp_path))
    bad = ds.train.frames[0][1]
    with open(bad, "r+b") as f:
        f.truncate(150)
    loader = _train_loader(ds.train, seq_len=8)  # T > frames: every frame is read
    with caplog.at_level("WARNING", logger="stgcn_pyg.data"):
        for e in range(3):
            loader.set_epoch(e)
            batches = list(loader)
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"skipping a frame: truncated image file: {bad} (") for m in said), said
    assert loader.num_skipped_frames > 0
    assert all(b.frames.shape[0] == 4 * 8 for b in batches)
    # Every frame of a tracklet unreadable: a clear error.
    for p in ds.query.frames[0]:
        with open(p, "wb") as f:
            f.write(b"x")
    tl = build_test_loader(ds.query, seq_len=2, image_size=SIZE, batch_size=2)
    with pytest.raises(DatasetError, match=r"no readable frame in the tracklet of .*0002C1T0001F001.jpg"):
        list(tl)
    assert len(MARS_TEST) == 8


def test_device_path_normalises_after_transfer_with_identical_values(mars):
    # uint8 frames through the workers, normalised (and erased) on the device: same batch as the float path.
    a = _train_loader(mars.train, random_erasing=True)
    b = _train_loader(mars.train, random_erasing=True, device="cpu")
    for x, y in zip(a, b):
        assert y.frames.dtype == torch.float32 and "erase" not in y
        assert torch.allclose(x.frames, y.frames, atol=1e-6)
        assert torch.equal(x.temporal_edge_index, y.temporal_edge_index) and torch.equal(x.label, y.label)


# --- Issue 34: batches built whole, TorchCodec, GPU decode (tested with a CPU stand-in) ---

def _textured_mars(tmp_path, sizes=((24, 12), (16, 8), (20, 10))):
    """The fixture set with textured frames of several sizes (height, width): resizing and flips show."""
    from PIL import Image

    ds = load_dataset("mars", write_mars(tmp_path))
    rng = np.random.default_rng(0)
    for r, paths in enumerate(list(ds.train.frames) + list(ds.query.frames) + list(ds.gallery.frames)):
        for k, p in enumerate(paths):
            h, w = sizes[(r + (k if r % 2 else 0)) % len(sizes)]  # odd rows mix sizes within the tracklet
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p, quality=90)
    return ds


def test_frames_decode_to_torchvisions_pixels(tmp_path):
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_image

    from stgcn_pyg.data.transforms import DECODER

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)).save(tmp_path / "rgb.jpg", quality=85)
    Image.fromarray(rng.integers(0, 256, (64, 32), dtype=np.uint8)).save(tmp_path / "gray.jpg")
    Image.fromarray(rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    for name in ("rgb.jpg", "gray.jpg", "rgb.png"):
        ours = read_frame(str(tmp_path / name))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torchvision's decoders are deprecated
            ref = decode_image(str(tmp_path / name), mode=ImageReadMode.RGB)
        assert ours.dtype == torch.uint8 and ours.shape == (3, 64, 32) and torch.equal(ours, ref), name
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception:
        assert DECODER == "torchvision"
    else:
        assert DECODER == "torchcodec"


@pytest.mark.parametrize("kw", [{}, {"device": "cpu"}, {"random_erasing": True, "device": "cpu"}])
def test_a_batch_built_whole_equals_per_item_data_and_pyg_collation(tmp_path, kw):
    from torch_geometric.data import Batch

    ds = _textured_mars(tmp_path)
    loader = _train_loader(ds.train, seq_len=6, **kw)  # T > most tracklets: repeated frames
    train = loader.dataset
    items = loader.sampler.global_batches(0)[0]
    whole = train.__getitems__(items)[0]
    ref = Batch.from_data_list([train[i] for i in items])
    assert sorted(whole.keys()) == sorted(ref.keys()) and whole.graph == ref.graph
    for key in ref.keys():
        if isinstance(ref[key], torch.Tensor):
            assert torch.equal(whole[key], ref[key]), key
    if "device" in kw:  # uint8 frames in channels_last, as the decoders write them
        assert whole.frames.dtype == torch.uint8 and whole.frames.is_contiguous(memory_format=torch.channels_last)
    else:
        assert whole.frames.dtype == torch.float32 and whole.frames.is_contiguous()
    assert torch.equal(whole.get_example(1).frames, ref.get_example(1).frames)


def test_resize_matches_torchvision_on_contiguous_frames(tmp_path):
    import torchvision.transforms.v2.functional as F

    ds = _textured_mars(tmp_path)
    frames = [read_frame(p) for p in ds.train.frames[0]]
    ours = TrackletTransform((32, 16)).resize(frames)
    ref = F.resize(torch.stack([f.contiguous() for f in frames]), [32, 16], antialias=True)
    assert torch.equal(ours, ref)


def test_in_process_buffers_are_reused_only_when_released(mars):
    loader = _train_loader(mars.train, device="cpu", seq_len=8)
    raw = loader.loader  # uint8 batches, before normalisation
    kept = []
    for e in range(4):
        loader.set_epoch(e)
        for b in raw:
            kept.append((b, b.frames.clone()))
    assert all(torch.equal(b.frames, copy) for b, copy in kept)  # held batches were never written over
    del kept, b
    ptrs = set()
    for e in range(4):
        loader.set_epoch(e)
        for b in raw:
            ptrs.add(b.frames.data_ptr())
            del b
    assert len(ptrs) == 1  # released at once: one buffer serves every batch
    # Worker processes write the frames into shared memory: the batch crosses as a handle.
    w = _train_loader(mars.train, device="cpu", seq_len=8, num_workers=1)
    assert all(b.frames.is_shared() for b in w.loader)


def _stand_in():
    from stgcn_pyg.data.transforms import decode_frame

    calls = []

    def decode(datas):  # the nvjpeg call's contract (a list of byte tensors in, frames out), on the CPU
        calls.append(list(datas))
        return [decode_frame(d, "stand-in") for d in datas]

    return decode, calls


@pytest.mark.parametrize("workers", [0, 1])
def test_cuda_decode_path_with_a_stand_in_decoder(tmp_path, workers, caplog):
    ds = _textured_mars(tmp_path)
    png = ds.train.frames[2][0]  # a PNG named .jpg: decoded in the worker, not by the batch decoder
    from PIL import Image
    Image.open(png).save(png, format="PNG")
    bad = ds.train.frames[3][1]
    with open(bad, "r+b") as f:
        f.truncate(150)
    decode, calls = _stand_in()
    cpu = _train_loader(ds.train, seq_len=6, random_erasing=True, device="cpu", num_workers=workers)
    gpu = _train_loader(ds.train, seq_len=6, random_erasing=True, device="cpu", decode="cuda", decoder=decode,
                        num_workers=workers)
    # Workers only read: the batch carries the JPEG files' bytes, one copy per distinct frame.
    items = gpu.sampler.global_batches(0)[0]
    enc = gpu.dataset.__getitems__(items)[0]
    assert enc.frames.numel() == 0 and enc.encoded.dtype == torch.uint8
    parts = torch.split(enc.encoded, enc.encoded_sizes.tolist())
    assert len(parts) == len(set(enc.encoded_paths)) and png not in enc.encoded_paths and bad not in enc.encoded_paths
    for part, path in zip(parts, enc.encoded_paths):
        assert torch.equal(part, torch.from_numpy(np.fromfile(path, np.uint8)))
    with caplog.at_level("WARNING", logger="stgcn_pyg.data"):
        for e in range(3):
            cpu.set_epoch(e)
            gpu.set_epoch(e)
            n = len(calls)
            for a, b in zip(cpu, gpu):
                assert torch.equal(a.frames, b.frames) and a.frames.dtype == torch.float32
                assert set(a.keys()) == set(b.keys()) and torch.equal(a.spatial_edge_index, b.spatial_edge_index)
                assert torch.equal(a.label, b.label) and torch.equal(a.skipped, b.skipped)
            assert len(calls) - n == len(gpu)  # one decoder call per batch, on a list
    assert all(isinstance(c, list) and c for c in calls)
    assert gpu.num_skipped_frames == cpu.num_skipped_frames > 0


def test_cuda_decode_needs_a_cuda_device_and_a_known_mode(mars):
    from stgcn_pyg.config import config_from_dict
    from stgcn_pyg.errors import ConfigError

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r'data.decode = "cuda" decodes on a CUDA device; the training device is the CPU'):
            _train_loader(mars.train, decode="cuda")
        with pytest.raises(ConfigError, match=r'data.decode = "cuda" decodes on a CUDA device.*cpu'):
            _train_loader(mars.train, decode="cuda", device="cpu")
    with pytest.raises(ConfigError, match=r"data.decode: 'gpu' is not one of 'cpu', 'cuda'"):
        _train_loader(mars.train, decode="gpu")
    with pytest.raises(ConfigError, match=r"data.decode: 'gpu' is not one of 'cpu', 'cuda'"):
        config_from_dict({"data": {"decode": "gpu"}})
    assert config_from_dict({"data": {"decode": "cuda"}}).data.decode == "cuda"


def test_what_goes_to_the_gpu_batch_decoder(tmp_path):
    from stgcn_pyg.data.transforms import is_complete_jpeg, read_bytes

    write_image(tmp_path / "a.jpg")
    write_image(tmp_path / "a.png")
    jpeg = read_bytes(str(tmp_path / "a.jpg"))
    assert is_complete_jpeg(jpeg)
    assert is_complete_jpeg(torch.cat([jpeg, torch.zeros(8, dtype=torch.uint8)]))  # padded after EOI
    assert not is_complete_jpeg(jpeg[:150])  # truncated: decoded (and named) on the CPU
    assert not is_complete_jpeg(read_bytes(str(tmp_path / "a.png")))
    assert not is_complete_jpeg(torch.empty(0, dtype=torch.uint8))
