"""The stale-temp sweep runs once per output folder per process, not once per output."""

import os

import numpy as np

from aiflat_gui.io import outputs
from aiflat_gui.io.base import AtomicOutput


def test_a_folder_is_swept_on_the_first_write_only(tmp_path, monkeypatch):
    listed = []
    real_scandir = os.scandir

    def counting_scandir(path):
        listed.append(os.path.realpath(path))
        return real_scandir(path)

    monkeypatch.setattr(outputs.os, "scandir", counting_scandir)
    monkeypatch.setattr(outputs, "_SWEPT", set())
    dead = tmp_path / f".a.bin.aiflat-{outputs.host_tag()}-{2**22 + 7}-1.abcdefgh.partial"
    dead.write_bytes(b"x")
    for k in range(5):
        with AtomicOutput(tmp_path / f"out{k}.bin") as tmp:
            np.arange(4, dtype=np.uint8).tofile(tmp)
    assert listed.count(os.path.realpath(tmp_path)) == 1
    assert not dead.exists()  # the first write removed the dead run's leftover
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{k}.bin" for k in range(5)]
