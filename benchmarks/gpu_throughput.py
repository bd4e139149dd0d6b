"""Training throughput on a GPU: run this first on a new GPU machine and pick ``resources.gpu`` from it.

For each method at the papers' scale (width 64, 32 x 32 RGB, synthetic CIFAR-shaped data, so no
dataset is needed) and batch sizes 64 and 512: G steps per second (each with the method's ``n_dis`` D
steps) eager vs ``amp=bf16`` vs ``compile=true``; then trials per GPU: 1, 2 and 4 processes training
DCGAN at batch 64 on the same device at once, their total steps per second. If the total barely grows
from 1 to 2 processes, one trial fills the GPU (``resources.gpu: 1``); if it nearly doubles, give each
trial half a GPU (``resources.gpu: 0.5``), and so on.

Every measurement is a fresh child process (its own CUDA context, warm-up steps untimed, then
``steps`` timed steps ending with a device synchronisation). Without CUDA the same code runs on the
CPU at a tiny scale (width 4, batch 8, a few steps), says so, and still prints its last line:
that is what CI runs, to keep the instrument working for the first machine that has a GPU.

    python benchmarks/gpu_throughput.py [steps=30] [warmup=5] [methods=dcgan,contrad,damage,cgan]
    python benchmarks/gpu_cost_estimate.py throughput=<file with this script's last line>

Last line: {"device": ..., "scale": ..., "steps_per_s": {"<method>/b<batch>/<mode>": ...},
"trials_per_gpu": {"1": total steps/s, "2": ..., "4": ...}, ...}
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODES = {"eager": {}, "bf16": {"amp": "bf16"}, "compiled": {"compile": True}}
# the papers' networks (the cifar10_gpu presets): SNDCGAN width 64 at 32 x 32; each method's n_dis
PAPER = {"ch": 64, "batches": (64, 512), "n_dis": {"dcgan": 1, "contrad": 1, "damage": 1, "cgan": 5}}
TINY = {"ch": 4, "batches": (8,)}  # each method's own default n_dis (the CPU's), read when run


def child(method: str, batch: int, mode: str, steps: int, warmup: int, ch: int, n_dis: int) -> None:
    import torch

    from gpu_cost_estimate import synthetic_cifar
    from trainers.config import make_config
    from trainers.data import to_float
    from trainers.loop import Stepper, seed_everything
    from trainers.methods import get_method

    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(1)
    cfg = make_config({"method": method, "dataset": "cifar10", "resolution": 32, "ch": ch, "batch_size": batch,
                       "n_dis": n_dis, "imbalance": 100, "device": "cuda" if cuda else "cpu", **MODES[mode]})
    seed_everything(0)
    data = synthetic_cifar(cfg)
    device = torch.device(cfg.device)
    method_obj = get_method(method)(cfg, data, device)
    stepper = Stepper(method_obj, cfg)
    images = to_float(data.train.images[:batch]).to(device)
    labels = data.train.labels[:batch].to(device)

    def run(n: int, first: int) -> None:
        for step in range(first, first + n):
            method_obj.before_step(step)  # the method's per-step hook, as the loop calls it (Damage GAN's masks)
            for _ in range(method_obj.n_dis):
                stepper.d_step(images, labels, step)
            stepper.g_step(batch, step)
        if cuda:
            torch.cuda.synchronize()

    run(warmup, 0)  # compilation, cuDNN autotuning, allocator
    start = time.perf_counter()
    run(steps, warmup)
    print(json.dumps({"steps_per_s": steps / (time.perf_counter() - start)}))


def launch(method: str, batch: int, mode: str, args: dict, scale: dict) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--child", method, str(batch), mode, str(args["steps"]), str(args["warmup"]),
           str(scale["ch"]), str(scale["n_dis"][method])]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> float:
    out, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"benchmark child failed ({proc.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])["steps_per_s"]


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        method, batch, mode, steps, warmup, ch, n_dis = sys.argv[2:9]
        child(method, int(batch), mode, int(steps), int(warmup), int(ch), int(n_dis))
        return
    import torch

    cuda = torch.cuda.is_available()
    scale = PAPER if cuda else TINY
    given = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    args = {"steps": int(given.get("steps", 30 if cuda else 5)), "warmup": int(given.get("warmup", 5 if cuda else 2))}
    methods = given.get("methods", "dcgan,contrad,damage,cgan").split(",")
    if not cuda:
        from trainers.methods import get_method

        scale = {**scale, "n_dis": {m: get_method(m).default_n_dis for m in dict.fromkeys([*methods, "dcgan"])}}
        print("no CUDA device here: measuring on the CPU at a tiny scale (width 4, batch 8); the figures "
              "only show that the instrument works", file=sys.stderr, flush=True)
    rates = {}
    for method in methods:
        for batch in scale["batches"]:
            for mode in MODES:
                key = f"{method}/b{batch}/{mode}"
                rates[key] = round(result(launch(method, batch, mode, args, scale)), 3)
                print(f"{key:28s} {rates[key]:9.2f} G steps/s", file=sys.stderr, flush=True)
    shared = {}
    batch = scale["batches"][0]
    for n in (1, 2, 4):  # processes sharing the device at once
        procs = [launch("dcgan", batch, "eager", args, scale) for _ in range(n)]
        shared[str(n)] = round(sum(result(p) for p in procs), 3)
        print(f"{n} concurrent dcgan trials: {shared[str(n)]:.2f} G steps/s in total", file=sys.stderr, flush=True)
    print(json.dumps({"device": torch.cuda.get_device_name(0) if cuda else "cpu (tiny scale, not a GPU figure)",
                      "scale": {"ch": scale["ch"], "batches": list(scale["batches"]), "n_dis": scale["n_dis"]},
                      "steps_per_s": rates, "trials_per_gpu": shared, **args}))


if __name__ == "__main__":
    main()
