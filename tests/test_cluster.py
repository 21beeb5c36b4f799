"""`aiflat batch --cluster` on real Dask clusters: a LocalCluster of worker processes, the CLI's
local:2, and a scheduler and workers started with Dask's own `dask` command on 127.0.0.1."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from aiflat_gui.cli import main
from aiflat_gui.io.demo import write_demo
from aiflat_gui.io.outputs import RECEIPTS
from aiflat_gui.pipeline import batch_calibrate, expand_inputs

distributed = pytest.importorskip("distributed")

WORKER_OPTS = dict(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                   scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """20 small videos (4 different ones, 5 copies each) and a flat that fits them; plus the
    outputs of the local batch (one process) as the reference."""
    root = tmp_path_factory.mktemp("session")
    src = root / "in"
    src.mkdir()
    for seed in range(4):
        d = write_demo(root / f"demo{seed}", frames=6, width=96, height=64, seed=seed + 1, difficulty="easy")
        for c in range(5):
            shutil.copy(d["sequence"], src / f"v{seed}{c}.ser")
    flat = root / "demo0" / "truth_flat.fits"
    summary = batch_calibrate([src], flat, root / "local", jobs=1)
    assert summary.ok and summary.count("ok") == 20
    return {"root": root, "in": src, "flat": flat, "local": root / "local"}


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(**WORKER_OPTS) as c:
        yield c


def same_outputs(out: Path, ref: Path, names=None) -> list[str]:
    names = sorted(p.name for p in ref.glob("*_calibrated.ser")) if names is None else names
    for name in names:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    return names


def partials(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.partial"))


def test_cli_local_cluster_is_bit_identical_and_a_corrupt_file_fails_alone(session, tmp_path, capsys):
    inputs = tmp_path / "in"
    shutil.copytree(session["in"], inputs)
    (inputs / "v33.ser").write_bytes((inputs / "v33.ser").read_bytes()[:500])  # 1 corrupt among 20
    out = tmp_path / "out"
    rc = main(["batch", str(inputs), "--flat", str(session["flat"]), "-o", str(out), "--cluster", "local:2"])
    captured = capsys.readouterr()
    assert rc == 1
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1 and "v33.ser" in errors[0] and "truncated or damaged" in errors[0]
    assert "Traceback" not in captured.err
    good = sorted(p.name for p in session["local"].glob("*.ser") if p.name != "v33_calibrated.ser")
    assert len(good) == 19 and sorted(p.name for p in out.glob("*.ser")) == good
    same_outputs(out, session["local"], good)
    assert not partials(out)
    rep = json.loads((out / "batch_report.json").read_text())
    assert rep["files"] == 20 and rep["status"] == {"failed": 1, "ok": 19}
    row = {r["file"]: r for r in rep["items"]}[str(inputs / "v33.ser")]
    assert row["status"] == "failed" and "truncated" in row["note"] and row["bytes"] == 500
    workers = {r["worker"] for r in rep["items"]}
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    csv = (out / "batch_report.csv").read_text().splitlines()
    assert csv[0].startswith("file,frames,seconds,bytes,status,worker,retries") and len(csv) == 21


def test_worker_killed_mid_file_is_rescheduled_into_one_complete_output(session, cluster, tmp_path):
    import threading

    from aiflat_gui.cluster import cluster_batch

    inputs = sorted(session["in"].glob("v0*.ser")) + [session["in"] / "v11.ser"]
    long = inputs[-1]
    hold = tmp_path / "hold"
    hold.touch()
    out = tmp_path / "out"
    done = {}
    finished = []

    def run():
        done["summary"] = cluster_batch(inputs, session["flat"], out, cluster.scheduler_address,
                                        _hold={long.name: str(hold)}, on_item=finished.append)

    t = threading.Thread(target=run)
    t.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (len(finished) == 5 and partials(out)):
            time.sleep(0.05)
        (tmp,) = partials(out)  # the long file, complete in its temporary name, waiting
        assert tmp.name.startswith(".v11_calibrated.ser.")
        with distributed.Client(cluster.scheduler_address) as client:
            busy = [w for w, keys in client.processing().items() if keys]
            (addr,) = busy
            pid = client.run(os.getpid, workers=[addr])[addr]
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        assert not (out / "v11_calibrated.ser").exists()  # nothing under the final name
    finally:
        hold.unlink()  # the next attempt goes straight through
        t.join(180)
    summary = done["summary"]
    assert summary.ok and summary.count("ok") == 6
    by_name = {Path(it.input).name: it for it in summary.items}
    assert by_name["v11.ser"].retries == 1 and by_name["v11.ser"].worker != addr
    assert all(it.retries == 0 for n, it in by_name.items() if n != "v11.ser")
    same_outputs(out, session["local"], [f"{p.stem}_calibrated.ser" for p in inputs])
    assert sorted(p.name for p in out.iterdir() if p.name != RECEIPTS) == sorted(f"{p.stem}_calibrated.ser" for p in inputs)
    js, cs = summary.write_report(tmp_path / "report")
    row = {Path(r["file"]).name: r for r in json.loads(js.read_text())["items"]}["v11.ser"]
    assert row["retries"] == 1 and row["status"] == "ok"
    assert any(line.startswith(str(long)) and ",ok," in line and f",{addr}," not in line
               for line in cs.read_text().splitlines())


def test_cancel_stops_running_files_and_leaves_no_partial_output(session, cluster, tmp_path):
    from aiflat_gui.cluster import cluster_batch
    from aiflat_gui.errors import Cancelled

    inputs = [session["in"] / "v01.ser", session["in"] / "v02.ser"]
    hold = tmp_path / "hold"
    hold.touch()
    out = tmp_path / "out"

    def progress(fraction, message):
        if len(partials(out)) == 2:  # both files written in full, waiting for their rename
            raise Cancelled()

    try:
        with pytest.raises(Cancelled):
            cluster_batch(inputs, session["flat"], out, cluster.scheduler_address, progress=progress,
                          _hold={p.name: str(hold) for p in inputs})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and partials(out):
            time.sleep(0.1)
    finally:
        hold.unlink()
    assert list(out.iterdir()) == []


KILLED_RUN = textwrap.dedent("""
    import sys
    from aiflat_gui.cluster import cluster_batch
    if __name__ == "__main__":
        inputs, flat, out = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
        cluster_batch(inputs, flat, out, "local:2", _hold=dict(kv.split("=", 1) for kv in sys.argv[4].split(",")))
""")


def test_resume_after_a_killed_run_finishes_only_what_was_missing(session, cluster, tmp_path):
    inputs = sorted(session["in"].glob("v1*.ser")) + [session["in"] / "v20.ser"]  # 6 files
    # every output is held once complete (before its rename) until the test lets it go; the two
    # that get there first are let go (whichever they are: the scheduler's order is not fixed), the
    # next two stay held, complete under their temporary names, when the run is killed
    holds = {p.name: tmp_path / f"hold-{p.name}" for p in inputs}
    for h in holds.values():
        h.touch()

    def waiting():
        return {n for n, h in holds.items() if Path(f"{h}.waiting").exists()}

    out = tmp_path / "out"
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    proc = subprocess.Popen([sys.executable, str(script), ",".join(map(str, inputs)), str(session["flat"]), str(out),
                             ",".join(f"{n}={h}" for n, h in holds.items())], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    released: set = set()
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and len(waiting()) < 2:
            assert proc.poll() is None
            time.sleep(0.1)
        released = set(sorted(waiting())[:2])
        assert len(released) == 2
        for n in released:
            holds[n].unlink()
        # the two outputs renamed into place with their receipts, and two more complete ones held
        while time.monotonic() < deadline and not (len(list(out.glob("*.ser"))) == 2
                                                   and len(waiting() - released) == 2
                                                   and len(list(out.glob(".aiflat-receipts/*.json"))) == 2):
            assert proc.poll() is None
            time.sleep(0.1)
        assert len(waiting() - released) == 2 and len(partials(out)) == 2
    finally:
        tree = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(30)
        for h in holds.values():
            h.unlink(missing_ok=True)
    first = {p.name: p.stat() for p in out.glob("*.ser")}
    assert sorted(first) == sorted(f"{Path(n).stem}_calibrated.ser" for n in released)
    stale = partials(out)
    stem = tmp_path / "resumed"
    rc = main(["-q", "batch", *map(str, inputs), "--flat", str(session["flat"]), "-o", str(out), "--resume",
               "--cluster", cluster.scheduler_address, "--report", str(stem)])
    assert rc == 0
    rows = {Path(r["file"]).name: r for r in json.loads(stem.with_suffix(".json").read_text())["items"]}
    assert [rows[p.name]["status"] for p in inputs] == ["kept" if p.name in released else "ok" for p in inputs]
    for name, st in first.items():  # the complete outputs were not rewritten
        now = (out / name).stat()
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    same_outputs(out, session["local"], [f"{p.stem}_calibrated.ser" for p in inputs])
    # the killed run's temporary files were never taken for outputs (their removal is the stale-file
    # clean-up's job: their writer died with the killed run)
    assert all(not p.name.endswith(".ser") for p in stale)


def test_resume_does_not_trust_a_damaged_output(session, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(session["local"], out)
    victim = out / "v00_calibrated.ser"
    victim.write_bytes(victim.read_bytes()[:-100])  # truncated: the trailer is incomplete
    fine = out / "v01_calibrated.ser"
    before = fine.stat().st_mtime_ns
    summary = batch_calibrate([session["in"] / "v00.ser", session["in"] / "v01.ser"], session["flat"], out,
                              jobs=1, resume=True)
    assert [it.status for it in summary.items] == ["ok", "kept"]
    assert fine.stat().st_mtime_ns == before
    same_outputs(out, session["local"], ["v00_calibrated.ser", "v01_calibrated.ser"])


def test_resume_does_not_trust_an_output_made_with_another_flat(session, tmp_path):
    """--resume keeps an output only when its receipt says this flat (and input, format, pedestal)
    made it: a complete output of another flat -- or one edited since -- is calibrated again."""
    from aiflat_gui.io.flats import write_flat
    from aiflat_gui.io.single import read_image

    out = tmp_path / "out"
    ins = [session["in"] / "v00.ser", session["in"] / "v01.ser"]
    other = read_image(session["flat"]).astype(np.float32)
    other[other < 1.0] = 1.0  # another flat: no correction at all
    other_flat = write_flat(tmp_path / "other.fits", other)
    first = batch_calibrate(ins, other_flat, out, jobs=1)
    assert [it.status for it in first.items] == ["ok", "ok"]
    # the same flat again: kept
    again = batch_calibrate(ins, other_flat, out, jobs=1, resume=True)
    assert [it.status for it in again.items] == ["kept", "kept"]
    # the session's flat: both complete outputs were made with another flat -> calibrated again
    summary = batch_calibrate(ins, session["flat"], out, jobs=1, resume=True)
    assert [it.status for it in summary.items] == ["ok", "ok"], [it.note for it in summary.items]
    assert "another flat" in summary.items[0].note
    same_outputs(out, session["local"], ["v00_calibrated.ser", "v01_calibrated.ser"])
    # an output changed after it was written (same size, new mtime) is not trusted either
    victim = out / "v00_calibrated.ser"
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    summary = batch_calibrate(ins, session["flat"], out, jobs=1, resume=True)
    assert [it.status for it in summary.items] == ["ok", "kept"]


def test_dask_cli_scheduler_and_workers_on_localhost(session, tmp_path):
    dask = Path(sys.executable).with_name("dask")
    if not dask.exists():
        pytest.skip("the dask command is not installed beside this Python")
    sched_file = tmp_path / "scheduler.json"
    env = dict(os.environ)
    procs = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--dashboard-address", "127.0.0.1:0",
                               "--scheduler-file", str(sched_file)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not sched_file.exists():
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        procs.append(subprocess.Popen([str(dask), "worker", address, "--nworkers", "2", "--nthreads", "1",
                                       "--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                                       "--local-directory", str(tmp_path)],
                                      cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=90)
        tree = [psutil.Process(p.pid) for p in procs]
        tree += [c for p in tree[:] for c in p.children(recursive=True)]
        listening = {(c.laddr.ip, c.laddr.port) for p in tree for c in p.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN}
        assert len(listening) >= 3 and {ip for ip, _ in listening} == {"127.0.0.1"}, listening
        out = tmp_path / "out"
        manifest = tmp_path / "list.txt"
        manifest.write_text("# session videos\n" + "\n".join(str(p) for p in sorted(session["in"].glob("v2*.ser")))
                            + "\n\n")
        rc = main(["-q", "batch", f"@{manifest}", str(session["in"] / "v3[01].ser"), "--flat", str(session["flat"]),
                   "-o", str(out), "--cluster", address])
        assert rc == 0
        names = same_outputs(out, session["local"],
                             [f"v2{c}_calibrated.ser" for c in range(5)] + ["v30_calibrated.ser", "v31_calibrated.ser"])
        assert sorted(p.name for p in out.glob("*.ser")) == sorted(names)
        rep = json.loads((out / "batch_report.json").read_text())
        assert len({r["worker"] for r in rep["items"]}) == 2
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGINT)
        for p in reversed(procs):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


def test_stale_temp_sweep_never_judges_another_machines_writer(tmp_path, monkeypatch):
    """On a shared filesystem a worker must not delete the live temporary output of a worker on
    another machine because that writer's PID does not exist here."""
    from aiflat_gui.io import outputs

    dead_pid = 4194303  # above any PID Linux hands out by default
    mine = tmp_path / f".a.ser.aiflat-{outputs.host_tag()}-{dead_pid}-1.abcdefgh.partial"
    other_host = "00000000" if outputs.host_tag() != "00000000" else "11111111"
    theirs = tmp_path / f".b.ser.aiflat-{other_host}-{dead_pid}-1.abcdefgh.partial"
    live = tmp_path / (outputs.temp_prefix(tmp_path / "c.ser") + "abcdefgh.partial")
    for p in (mine, theirs, live):
        p.write_bytes(b"x")
    assert outputs.sweep_stale_temps(tmp_path) == [mine]
    assert theirs.exists() and live.exists() and not mine.exists()


def test_inputs_from_patterns_and_manifests(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x1.ser", "a/x2.ser", "a/y.avi", "a/.x3.ser.abc.partial", "b.ser"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "list.txt").write_text("# archive\nb.ser\n\na/*.ser\n")
    got = expand_inputs([str(tmp_path / "a" / "*.ser"), f"@{tmp_path / 'list.txt'}"])
    assert [p.relative_to(tmp_path).as_posix() for p in got] == ["a/x1.ser", "a/x2.ser", "b.ser"]


def test_cluster_errors_are_one_line(session, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("aiflat_gui.cluster.CONNECT_TIMEOUT", 2.0)
    args = ["batch", str(session["in"] / "v00.ser"), "--flat", str(session["flat"]), "-o", str(tmp_path / "o")]
    assert main(args + ["--cluster", "nowhere"]) == 2
    assert "--cluster takes a scheduler address" in capsys.readouterr().err
    assert main(args + ["--cluster", "tcp://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler" in err and len(err.strip().splitlines()) == 1
    assert main(["batch", str(tmp_path / "none*.ser"), "--flat", str(session["flat"]), "-o", str(tmp_path / "o"),
                 "--cluster", "local:1"]) == 2
    assert "no file matches this pattern" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if the cluster extra were not installed
    assert main(args + ["--cluster", "local:2"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "aiflat: error: --cluster needs Dask's distributed package: pip install 'aiflat-gui[cluster]'"
