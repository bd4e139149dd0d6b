"""The speed options a GPU user expects, checked for correctness on the CPU: bf16 autocast, compiled
nets, channels-last memory format, and the deferred finiteness check that still names the exact step."""

from __future__ import annotations

import math

import pytest
import torch

from trainers import checkpoint as ckpt
from trainers.loop import FINITE_CHECK_EVERY, DivergedError, train
from trainers.methods import METHODS

BASE = {"dataset": "digits", "ch": 4, "z_dim": 16, "batch_size": 16, "device": "cpu", "imbalance": 10}
BF16_TOLERANCE = 0.05  # relative, on each loss averaged over 20 steps (measured: within 1.5% on every method)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def losses(metrics):
    return {k: v for k, v in metrics.items() if k.startswith("loss/")}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_bf16_autocast_trains_finitely_and_close_to_fp32(method):
    cfg = {**BASE, "method": method, "steps": 20, "eval_every": 20}
    fp32, bf16 = losses(train(cfg, evaluator=None)), losses(train({**cfg, "amp": "bf16"}, evaluator=None))
    assert fp32.keys() == bf16.keys() and fp32
    for key in fp32:
        assert math.isfinite(bf16[key]), key
        assert abs(bf16[key] - fp32[key]) <= BF16_TOLERANCE * max(abs(fp32[key]), 0.1), (key, fp32[key], bf16[key])
    assert fp32 != bf16  # autocast really ran some ops in bfloat16


def same_training(method: str, option: dict, steps: int, tmp_path) -> None:
    """``option`` trains as the plain run does (losses within float tolerance) and writes checkpoints with
    the same state-dict keys, so the two are interchangeable."""
    cfg = {**BASE, "method": method, "steps": steps, "eval_every": steps}
    plain = losses(train(cfg, workdir=tmp_path / "plain", evaluator=None))
    other = losses(train({**cfg, **option}, workdir=tmp_path / "other", evaluator=None))
    for key in plain:
        assert other[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-5), key
    for net in ("G", "D"):
        assert ckpt.load_latest(tmp_path / "other")[0][net].keys() == ckpt.load_latest(tmp_path / "plain")[0][net].keys()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_channels_last_gives_the_same_training(method, tmp_path):
    same_training(method, {"channels_last": True}, 4, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_compiled_nets_match_eager(method, tmp_path):
    same_training(method, {"compile": True}, 3, tmp_path)
    # compiled in place: a compiled run's checkpoint resumes in an eager run
    train({**BASE, "method": method, "steps": 4, "eval_every": 4}, workdir=tmp_path / "other",
          resume_from=tmp_path / "other", evaluator=None)


def test_deferred_finiteness_check_names_the_exact_step(tmp_path):
    """The loop looks at the finiteness record only every FINITE_CHECK_EVERY steps (no host sync per
    step), yet a NaN in the middle of that window is reported at its own step, and nothing after it."""
    bad = FINITE_CHECK_EVERY + 7
    reports = []
    with pytest.raises(DivergedError) as e:
        train({**BASE, "method": "dcgan", "steps": 3 * FINITE_CHECK_EVERY, "eval_every": FINITE_CHECK_EVERY,
               "fault.nan_at_step": bad}, lambda m, c: reports.append(m), workdir=tmp_path, evaluator=None)
    assert e.value.step == bad and math.isnan(e.value.losses["loss/d"])
    assert [m["step"] for m in reports] == [FINITE_CHECK_EVERY]
    assert [p.name for p in ckpt.checkpoint_dirs(tmp_path)] == [f"step_{FINITE_CHECK_EVERY:09d}"]


@pytest.mark.slow
def test_gpu_throughput_benchmark_runs_in_its_cpu_mode():
    """The instrument a GPU user runs first: without CUDA it measures the same code at a tiny scale, says
    so, and prints its last line (every method x mode, and 1/2/4 concurrent trials)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_throughput.py"
    proc = subprocess.run([sys.executable, str(script), "steps=2", "warmup=1"], capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no CUDA device here" in proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["device"].startswith("cpu")
    assert set(out["steps_per_s"]) == {f"{m}/b8/{mode}" for m in METHODS for mode in ("eager", "bf16", "compiled")}
    assert all(v > 0 for v in out["steps_per_s"].values())
    assert set(out["trials_per_gpu"]) == {"1", "2", "4"} and all(v > 0 for v in out["trials_per_gpu"].values())
