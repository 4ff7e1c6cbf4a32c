"""Topology files and the edge_index builder."""

import pytest
import torch

from stgcn_pyg.errors import TopologyError
from stgcn_pyg.graphs import available_topologies, build_edge_index, load_topology


def _brute_force(T, P, frame_ok, stripe_ok):
    edges = set()
    for t1 in range(T):
        for p1 in range(P):
            for t2 in range(T):
                for p2 in range(P):
                    if (t1, p1) != (t2, p2) and frame_ok(abs(t1 - t2)) and stripe_ok(abs(p1 - p2)):
                        edges.add((t2 * P + p2, t1 * P + p1))  # (source, target)
    return edges


RULES = {
    "temporal-complete": (lambda g: True, lambda g: True),
    "spatial-frame-complete": (lambda g: g == 0, lambda g: True),
    "temporal-adjacent": (lambda g: g <= 1, lambda g: True),
    "temporal-same-stripe": (lambda g: True, lambda g: g == 0),
}


def test_shipped_topologies_are_listed():
    assert set(RULES) <= set(available_topologies())


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize("T,P", [(1, 1), (1, 4), (8, 4), (5, 3)])
def test_edges_match_brute_force(name, T, P):
    edge_index = build_edge_index(name, T, P)
    got = {tuple(e) for e in edge_index.t().tolist()}
    assert len(got) == edge_index.size(1), "duplicate edges"
    assert got == _brute_force(T, P, *RULES[name])
    assert edge_index.dtype == torch.long


@pytest.mark.parametrize(
    "name,count",
    [
        ("temporal-complete", 32 * 31),
        ("spatial-frame-complete", 8 * 4 * 3),
        ("temporal-adjacent", 24 * 11 + 8 * 7),
        ("temporal-same-stripe", 4 * 8 * 7),
    ],
)
def test_paper_size_edge_counts(name, count):
    assert build_edge_index(name, 8, 4).size(1) == count


def test_edges_sorted_by_target_and_cached():
    a = build_edge_index("temporal-complete", 4, 4)
    assert a is build_edge_index("temporal-complete", 4, 4)
    assert bool((a[1][1:] >= a[1][:-1]).all())


def test_completeness_flag():
    assert load_topology("temporal-complete").is_complete()
    assert not load_topology("spatial-frame-complete").is_complete()


def test_new_topology_is_a_new_file(tmp_path):
    path = tmp_path / "every-other-frame.toml"
    path.write_text('name = "every-other-frame"\ndescription = "x"\nframe_gap = [2]\nstripe_gap = 0\n')
    edge_index = build_edge_index(path, 5, 2)
    got = {tuple(e) for e in edge_index.t().tolist()}
    assert got == _brute_force(5, 2, lambda g: g == 2, lambda g: g == 0)


def test_topology_dir_from_environment(tmp_path, monkeypatch):
    (tmp_path / "mine.toml").write_text('name = "mine"\nframe_gap = 1\nstripe_gap = [0]\n')
    monkeypatch.setenv("STGCN_GRAPHS_DIR", str(tmp_path))
    assert "mine" in available_topologies()
    assert load_topology("mine").frame_gap == ("max", 1)


def test_unknown_topology_names_it_and_lists_known():
    with pytest.raises(TopologyError, match="unknown topology 'tempral-complete'.*temporal-complete"):
        load_topology("tempral-complete")


@pytest.mark.parametrize(
    "text,message",
    [
        ("name = \n", "malformed topology file"),
        ('name = "x"\nframe_gap = "all"\nstripe_gap = "any"\n', "'frame_gap' must be"),
        ('name = "x"\nframe_gap = -1\nstripe_gap = "any"\n', "'frame_gap' must be"),
        ('name = "x"\nframe_gap = []\nstripe_gap = "any"\n', "'frame_gap' must be"),
        ('name = "x"\nframe_gap = 1\n', r"missing key\(s\) \['stripe_gap'\]"),
        ('name = "x"\nframe_gap = 1\nstripe_gap = 1\nweights = 2\n', r"unknown key\(s\) \['weights'\]"),
    ],
)
def test_malformed_file_gets_one_clear_error_naming_it(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(TopologyError, match=message) as info:
        load_topology(path)
    assert str(path) in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(TopologyError, match="cannot read topology file"):
        load_topology(tmp_path / "nope.toml")
