"""Clone jobs of the control server (rtvc.control.clone): uploads bounded and kept inside the
upload folder, training in a child process whose progress and errors become events, cancel.
The child here is a small stand-in script (the real ``rtvc clone`` runs in test_panel)."""

from __future__ import annotations

import base64
import sys
import threading
import time
from pathlib import Path

import pytest

from rtvc.control import clone as C
from rtvc.control import protocol as P
from rtvc.control.actions import Controller
from rtvc.control.clone import CloneJobs, parse_progress
from rtvc.control.presets import PresetStore
from rtvc.errors import ConfigError
from tests.control.helpers import make_engine

# stands in for `rtvc clone FOLDER --name NAME ...`: progress lines as rtvc's Progress writes them
TRAINER = """
import sys, time
args = sys.argv[1:]
mode = args[args.index("--mode") + 1] if "--mode" in args else "ok"
if mode == "slow":
    time.sleep(120)
if mode == "fail":
    print("rtvc: error: clone: rec holds 0.32 minutes of active speech; expected at least 5 minutes", flush=True)
    sys.exit(2)
for i in range(1, 4):
    sys.stderr.write(f"\\rtrain [{'#' * 10 * i:<30}] {i}/3 loss=1.0 elapsed {i:5d}s ETA {3 - i:5d}s")
    sys.stderr.flush()
sys.stderr.write("\\n")
print(f"voice {args[args.index('--name') + 1]!r} written to /x.onnx in 3 s")
"""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def wait(pred, timeout=30.0):
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


@pytest.fixture()
def jobs(tmp_path):
    events: list[dict] = []
    lock = threading.Lock()

    def on_event(j):
        with lock:
            events.append(j)

    j = CloneJobs(on_event=on_event, voice_names=lambda: ["neutral", "joe"], root=tmp_path / "uploads",
                  out_dir=tmp_path / "voices", command=[sys.executable, "-c", TRAINER])
    j.events = events
    yield j
    j.close()


def test_parse_progress():
    line = "train [##########                    ] 1/3 loss=1.087 frame=0.5964 elapsed     5s ETA    10s"
    assert parse_progress(line) == {"stage": "train", "done": 1, "total": 3, "elapsed_s": 5.0, "eta_s": 10.0}
    assert parse_progress("voice 'x' written to y.onnx in 28 s") is None


def test_uploads_land_in_the_job_folder_in_order_and_bounded(jobs, monkeypatch):
    job = jobs.begin("my-voice", gender="female")["job"]
    folder = jobs.root / job
    assert folder.is_dir() and jobs.events[-1]["state"] == "uploading"
    assert jobs.upload(job, "take 1.wav", 0, b64(b"RIFF1234"))["received"] == 8
    assert jobs.upload(job, "take 1.wav", 8, b64(b"more"))["received"] == 12
    assert (folder / "take 1.wav").read_bytes() == b"RIFF1234more"
    # a path is reduced to its name: nothing is written outside the job's folder
    assert jobs.upload(job, "../../evil.wav", 0, b64(b"x"))["file"] == "evil.wav"
    assert jobs.upload(job, "C:\\Users\\me\\talk.flac", 0, b64(b"x"))["file"] == "talk.flac"
    assert sorted(p.name for p in folder.iterdir()) == ["evil.wav", "take 1.wav", "talk.flac"]
    assert not (jobs.root.parent / "evil.wav").exists()
    for file, offset, data, match in (
            ("notes.txt", 0, b64(b"x"), r"file name 'notes.txt'; expected a plain name .* \['.wav', '.flac'"),
            (".hidden.wav", 0, b64(b"x"), r"file name '.hidden.wav'"),
            ("take 1.wav", 4, b64(b"x"), r"'take 1.wav' offset 4; expected 12 \(chunks in order\)"),
            ("b.wav", 0, "not base64!", r"data of 'b.wav' at offset 0 is not base64"),
            ("b.wav", 0, b64(b"x" * (C.CHUNK_BYTES + 1)), r"a chunk of 32769 bytes; expected at most 32768")):
        with pytest.raises(ConfigError, match=match):
            jobs.upload(job, file, offset, data)
    monkeypatch.setattr(C, "MAX_FILE_BYTES", 16)
    with pytest.raises(ConfigError, match=r"'take 1.wav' grows past 0 MiB; expected smaller files"):
        jobs.upload(job, "take 1.wav", 12, b64(b"12345"))
    monkeypatch.setattr(C, "MAX_JOB_BYTES", 20)
    with pytest.raises(ConfigError, match=r"the recordings grow past 0 MiB"):
        jobs.upload(job, "c.wav", 0, b64(b"0123456789"))
    assert (folder / "take 1.wav").stat().st_size == 12 and not (folder / "c.wav").exists()


def test_names_are_checked_before_anything_is_written(jobs):
    for name, gender, match in (("../x", "unknown", r"voice name '../x' is invalid"),
                                ("joe", "unknown", r"voice name 'joe' is taken"),
                                ("new", "robot", r"gender 'robot': expected one of")):
        with pytest.raises(ConfigError, match=match):
            jobs.begin(name, gender=gender)
    assert not jobs.root.exists()
    with pytest.raises(ConfigError, match=r"clone job 'nope' is not known"):
        jobs.upload("nope", "a.wav", 0, b64(b"x"))


def test_training_progress_then_done(jobs):
    job = jobs.begin("mine")["job"]
    with pytest.raises(ConfigError, match=r"has no recordings"):
        jobs.start(job)
    jobs.upload(job, "a.wav", 0, b64(b"RIFF"))
    st = jobs.start(job, steps=3, min_minutes=0.5)
    assert st["state"] == "training" and st["stage"] == "analysing"
    wait(lambda: jobs.events[-1]["state"] == "done")
    trains = [e for e in jobs.events if e["stage"] == "train"]
    assert [e["eta_s"] for e in trains] == [2.0, 1.0] and 0 < trains[0]["fraction"] < trains[1]["fraction"] < 1
    assert "about 2 s left" in trains[0]["message"]
    done = jobs.events[-1]
    assert done["fraction"] == 1.0 and done["voice"] == "mine" and "is ready" in done["message"]
    assert not (jobs.root / job).exists()  # the voice is built: the uploads are gone
    with pytest.raises(ConfigError, match=r"is done; expected it to be uploading"):
        jobs.upload(job, "a.wav", 4, b64(b"x"))


def test_a_failed_training_says_why(jobs):
    jobs.command = [sys.executable, "-c", TRAINER, "--mode", "fail"]
    job = jobs.begin("mine")["job"]
    jobs.upload(job, "a.wav", 0, b64(b"RIFF"))
    jobs.start(job)
    wait(lambda: jobs.events[-1]["state"] == "failed")
    assert jobs.events[-1]["message"] == ("clone: rec holds 0.32 minutes of active speech; expected at least "
                                          "5 minutes")
    assert not (jobs.root / job).exists()  # the disk is given back: a new job uploads again


def test_cancel_ends_the_training_process_and_deletes_the_uploads(jobs):
    jobs.command = [sys.executable, "-c", TRAINER, "--mode", "slow"]
    job = jobs.begin("mine")["job"]
    jobs.upload(job, "a.wav", 0, b64(b"RIFF"))
    jobs.start(job)
    proc = jobs._jobs[job].proc  # the child itself: is it gone? (no public seam names a process)
    assert proc is not None and proc.poll() is None
    st = jobs.cancel(job)
    assert st["state"] == "cancelled" and proc.poll() is not None and not (jobs.root / job).exists()
    assert jobs.cancel(job)["state"] == "cancelled"  # idempotent
    wait(lambda: jobs.events[-1]["state"] == "cancelled")


def test_controller_announces_progress_and_the_new_voice(tmp_path):
    jobs = CloneJobs(root=tmp_path / "uploads", out_dir=tmp_path / "voices", command=[sys.executable, "-c", TRAINER])
    c = Controller(make_engine(), presets=PresetStore(tmp_path), clones=jobs)
    notes, changes = [], []
    c.add_notify_listener(lambda method, params: notes.append((method, params["state"])))
    c.add_listener(changes.append)
    job = c.execute(P.CloneBegin("mine"))["job"]
    c.execute(P.CloneUpload(job, "a.wav", 0, b64(b"RIFF")))
    c.execute(P.CloneStart(job, 1, 0.1))
    wait(lambda: notes and notes[-1] == ("clone_progress", "done"))
    # the voices change is announced after the 'done' progress note, from the job's thread
    wait(lambda: changes and changes[-1]["changed"] == ["voices"])
    assert changes[-1]["source"] == "clone"
    assert c.execute(P.CloneStatus())[0]["state"] == "done"
    with pytest.raises(P.RpcError, match=r"clone_begin: voice name 'neutral' is taken") as e:
        c.execute(P.CloneBegin("neutral"))
    assert e.value.code == P.INVALID_PARAMS
    with pytest.raises(P.RpcError, match=r"clone_start: steps = 0 is out of range"):
        P.CloneStart.from_params({"job": job, "steps": 0})
    c.close()
