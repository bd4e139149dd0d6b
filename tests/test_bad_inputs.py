"""Every bad input to the four commands: exit code 2, one line naming the file/key and the fix, no
traceback, and the stores of an existing study untouched (row counts compared before and after)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_server.__main__ import main as server_main
from search.report import main as report_main
from search.run import main as run_main
from search.spaces import load_space
from trainers.evaluate import main as evaluate_main
from trainers.train import main as train_main

from test_report import make_study
from test_search_e2e import ENV, PROJECT

GOOD = """name: {name}
metric: fid
sampler: grid
fixed: {{dataset: digits, steps: 4}}
params:
  method: {{choice: [dcgan]}}
  imbalance: {{choice: [1, 10]}}
"""


def row_counts(root: Path) -> dict[str, int]:
    counts = {}
    for db, tables in (("optuna.db", ("studies", "trials", "trial_values", "trial_params")),
                       ("mlflow.db", ("experiments", "runs", "metrics", "params", "tags"))):
        with sqlite3.connect(root / db) as conn:
            for table in tables:
                counts[f"{db}:{table}"] = conn.execute(f"select count(*) from {table}").fetchone()[0]
    return counts


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    space = load_space("smoke")
    make_study(root, space, [({"method": "dcgan", "imbalance": 1}, 0, 10.0)])
    return root


def space_file(tmp_path: Path, body: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    return str(path)


BAD_SPACES = {
    "malformed_yaml": ("name: bad\nmetric: fid\nparams: {method: [dcgan\n", "malformed YAML"),
    "unknown_key": (GOOD.format(name="bad") + "shedular: fifo\n", "did you mean 'scheduler'"),
    "wrong_type": (GOOD.format(name="bad").replace("steps: 4", "steps: four"), "'steps' must be int"),
    "out_of_range": (GOOD.format(name="bad").replace("[1, 10]", "[0.5, 10]"), "imbalance"),
    "empty_choice": (GOOD.format(name="bad").replace("[dcgan]", "[]"), "non-empty list"),
    "unknown_condition": (GOOD.format(name="bad") + "  prune_ratio: {choice: [0.5], when: {mehtod: damage}}\n",
                          "not a parameter of this space"),
    "num_samples_zero": (GOOD.format(name="bad") + "num_samples: 0\n", "num_samples"),
    "unknown_method": (GOOD.format(name="bad").replace("[dcgan]", "[dcgan, biggan]"), "unknown method 'biggan'"),
    "unknown_dataset": (GOOD.format(name="bad").replace("digits", "imagenet"), "unknown dataset 'imagenet'"),
    "knob_no_method_reads": (GOOD.format(name="bad").replace("steps: 4", "steps: 4, prune_ratio: 0.9"),
                             "prune_ratio is read by none of this space's methods (dcgan); drop it"),
    "unknown_preset": (GOOD.format(name="bad") + "presets: {cifar10_gpu: cifar10_cpu}\n", "is not a preset of"),
    # a metric no trial reports would end the study at the first evaluation, after the stores exist
    "unreported_metric": (GOOD.format(name="bad").replace("metric: fid", "metric: fidd"),
                          "metric 'fidd' is not reported by this space's trials; did you mean 'fid'?"),
    "unreported_objective": (GOOD.format(name="bad").replace("metric: fid", "metric: [fid, fid_minorty]"),
                             "metric 'fid_minorty' is not reported by this space's trials; "
                             "did you mean 'fid_minority'?"),
    "class_beyond_the_dataset": (GOOD.format(name="bad").replace("metric: fid", "metric: fid_class/10"),
                                 "metric 'fid_class/10' does not exist: digits has 10 classes, "
                                 "fid_class/0 .. fid_class/9"),
    "metric_of_some_trials_only": (GOOD.format(name="bad").replace("metric: fid", "metric: prune/sparsity")
                                   .replace("[dcgan]", "[dcgan, damage]"),
                                   "metric 'prune/sparsity' is not reported by every trial of this space "
                                   "(not with method=dcgan"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_bad_space_files(case, tmp_path, stores, capsys):
    body, expected = BAD_SPACES[case]
    before = row_counts(stores)
    path = space_file(tmp_path, body)
    assert run_main([f"space={path}", f"root={stores}"]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and path in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert row_counts(stores) == before


def test_space_file_that_is_not_utf8(tmp_path, stores, capsys):
    before = row_counts(stores)
    path = tmp_path / "latin1.yaml"
    path.write_bytes(GOOD.format(name="caf\u00e9").encode("latin-1"))
    assert run_main([f"space={path}", f"root={stores}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}: is not UTF-8 text (byte 0xe9 at offset 9); save it as UTF-8"
    assert row_counts(stores) == before


def test_root_that_is_a_file_and_space_that_is_a_directory(tmp_path, stores, capsys):
    before = row_counts(stores)
    file = tmp_path / "a_file"
    file.write_text("not a folder")
    for args, expected in (
            ([f"root={file}"], f"error: root={file} exists and is not a directory; give a folder (new or existing)"),
            ([f"root={file}/runs"], f"error: root={file}/runs cannot be made: {file} is a file, not a directory; "
                                    f"give another folder"),
            ([f"space={tmp_path}", f"root={stores}"], f"error: space={tmp_path} is a directory; give a .yaml file or "
                                                      f"a space name")):
        assert run_main(["space=smoke", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(expected) and len(err.splitlines()) == 1, err
    assert train_main([f"root={file}", "steps=2"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: root={file} exists and is not a directory; "
                                               f"give a folder (new or existing)")
    assert train_main([f"workdir={file}", f"root={tmp_path / 'r'}", "steps=2"]) == 2
    assert "workdir=" in capsys.readouterr().err
    assert file.read_text() == "not a folder" and not (tmp_path / "r").exists()
    assert row_counts(stores) == before


@pytest.mark.parametrize("args, expected", [
    (["space=nosuchspace"], "available"),
    (["space=smoke", "resume=true"], "no study 'smoke'"),  # run against an empty root
    (["space=smoke", "resume=maybe"], "true or false"),
    (["space=smoke", "num_samples=-1"], "num_samples"),
    (["space=smoke", "fixed.imbalance=0"], "imbalance"),
    (["space=smoke", "fixed.methd=dcgan"], "did you mean 'method'"),
    (["space=smoke", "preset=tpu"], "no preset 'tpu'"),
    (["space=smoke", "notakeyvalue"], "key=value"),
])
def test_bad_search_run_arguments(args, expected, tmp_path, stores, capsys):
    root = stores if "resume=true" not in args else tmp_path / "empty"
    before = row_counts(stores)
    assert run_main(args + [f"root={root}"]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1
    assert row_counts(stores) == before


def test_a_cache_or_root_that_cannot_be_a_folder_is_one_line_for_both_trainer_commands(tmp_path, capsys):
    """trainers.train and trainers.evaluate write the judge and reference statistics under cache_dir
    (default <root>/cache): a file there is refused in one line, not a traceback from mkdir."""
    file = tmp_path / "a_file"
    file.write_text("not a folder")
    samples = tmp_path / "s.npz"
    samples.write_bytes(b"")  # never read: the folders are checked first
    for command, args in ((train_main, ["steps=2"]), (evaluate_main, ["dataset=digits", f"images={samples}"])):
        for bad, expected in ((f"cache_dir={file}", f"error: cache_dir={file} exists and is not a directory"),
                              (f"root={file}", f"error: root={file} exists and is not a directory"),
                              (f"root={tmp_path}/r cache_dir={file}/c".split(),
                               f"error: cache_dir={file}/c cannot be made: {file} is a file")):
            assert command([*args, *([bad] if isinstance(bad, str) else bad)]) == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith(expected) and len(err.splitlines()) == 1, err
    assert file.read_text() == "not a folder"


@pytest.mark.parametrize("args, expected", [
    (["method=stylegan"], "unknown method 'stylegan'"),
    (["dataset=imagenet"], "unknown dataset 'imagenet'"),
    (["imbalance=0.5"], "imbalance"),
    (["method=damage", "prune_ratio=1.0"], "prune_ratio"),
    (["steps=0"], "steps"),
    (["eval.num_sample=5"], "did you mean 'eval.num_samples'"),
    (["batch_size=big"], "batch_size"),
    (["dataset=cifar10", "data_root={tmp}/nowhere"], "data_root"),
    (["resume=true", "workdir={tmp}/nothing"], "resume=true"),
])
def test_bad_trainer_arguments(args, expected, tmp_path, capsys):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert train_main(args + [f"root={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("state.pt"))


def test_bad_report_and_server_arguments(tmp_path, stores, capsys):
    before = row_counts(stores)
    assert report_main(["space=smoke", f"root={tmp_path}"]) == 2
    assert "no study 'smoke'" in capsys.readouterr().err
    assert report_main(["space=nosuch", f"root={stores}"]) == 2
    assert "available" in capsys.readouterr().err
    assert report_main(["space=smoke", f"root={stores}", "colour=red"]) == 2
    assert "unknown key" in capsys.readouterr().err
    assert server_main([f"root={tmp_path}"]) == 2
    assert "no MLflow store" in capsys.readouterr().err
    assert server_main([f"root={stores}", "port=99999"]) == 2
    assert "port" in capsys.readouterr().err
    assert server_main([f"root={stores}", "prot=5000"]) == 2
    assert "unknown key" in capsys.readouterr().err
    assert row_counts(stores) == before


@pytest.mark.parametrize("module, args", [
    ("search.run", ["space=nosuchspace"]),
    ("trainers.train", ["method=stylegan"]),
])
def test_real_processes_exit_2_with_one_line(module, args, tmp_path):
    proc = subprocess.run([sys.executable, "-m", module, *args, f"root={tmp_path}"], cwd=PROJECT, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr
