"""Importing and using stgcn-pyg prints nothing and leaves no temporary files behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap


def test_pyg_import_is_quiet_and_its_generated_modules_are_removed_at_exit(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent("""
        import json, os, sys, warnings
        from stgcn_pyg.nn import AffinityGCNConv  # imports torch_geometric first
        import torch

        conv = AffinityGCNConv(4, 4)  # PyG renders this class's propagate into a temporary module
        generated = sys.modules["stgcn_pyg.nn.affinity_conv_AffinityGCNConv_propagate"].__file__

        def user_function(x):
            return x + 1

        # The filter was scoped to PyG's import: the user's own deprecated calls still warn.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.jit.script(user_function)
        print(json.dumps({"generated": generated, "exists": os.path.exists(generated),
                          "user_warnings": [str(w.message) for w in caught]}))
    """))
    env = {**os.environ, "TMPDIR": str(tmp)}
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no FutureWarning from torch_geometric's import
    report = json.loads(proc.stdout)
    assert report["exists"] and os.path.dirname(report["generated"]) == str(tmp)
    assert any("torch.jit.script" in w for w in report["user_warnings"])
    leftovers = [p.name for p in tmp.iterdir() if p.name.startswith("stgcn_pyg")]
    assert leftovers == []
