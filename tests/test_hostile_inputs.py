"""Hostile inputs get one line and the right exit code: YAML alias bombs and duplicate keys, choices
duplicated by value, odd root= values, mlflow_server's port and host, corrupt .npz files."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from search.spaces import SpaceError, load_space

SMOKE = (Path(__file__).resolve().parent.parent / "spaces" / "smoke.yaml").read_text()


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("name: bomb\n" + "\n".join(lines) + "\n")
    started = time.perf_counter()
    with pytest.raises(SpaceError, match="expands to more than 100,000 values"):
        load_space(str(path))
    assert time.perf_counter() - started < 5  # it ran for minutes at 1.2 GB


def test_a_key_given_twice_is_refused_with_its_line(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(SMOKE.replace("name: smoke", "name: dup").replace("  ch: 4\n", "  ch: 4\n  ch: 8\n"))
    with pytest.raises(SpaceError) as e:
        load_space(str(path))
    line = SMOKE.replace("name: smoke", "name: dup").splitlines().index("  ch: 4") + 2
    assert str(e.value) == f"{path} line {line}: key 'ch' is given twice in one mapping; keep one"


def test_a_huge_file_is_refused_unread(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text(SMOKE + "#" * (2 * 1024 ** 2))
    with pytest.raises(SpaceError, match="a space is a page of YAML"):
        load_space(str(path))


@pytest.mark.parametrize("values", ["[1, 1.0]", "[1, true]", "[10, 10.0, 1]"])
def test_choice_duplicates_are_compared_by_value(tmp_path, values):
    path = tmp_path / "ch.yaml"
    path.write_text(SMOKE.replace("name: smoke", "name: ch").replace("{choice: [1, 10]}", f"{{choice: {values}}}"))
    with pytest.raises(SpaceError, match="choice has duplicate values"):
        load_space(str(path))
    path.write_text(SMOKE.replace("name: smoke", "name: ch").replace("{choice: [1, 10]}", "{choice: [1, 1.5]}"))
    load_space(str(path))


@pytest.mark.parametrize("arg, shown", [("root=", "root=None"), ("root=-", "root=[None]"), ("root=true", "root=True"),
                                        ("root=1e3", "root=1000.0"), ("root=[a,b]", "root=['a', 'b']"),
                                        ("workdir=7", "workdir=7")])
def test_root_and_workdir_take_only_paths(tmp_path, monkeypatch, capsys, arg, shown):
    from trainers.train import main as train_main

    monkeypatch.chdir(tmp_path)
    assert train_main([arg, "steps=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {shown} is not a folder's path") and "\n" not in err, err
    assert list(tmp_path.iterdir()) == []  # no folder named None, True, 1000.0 ...


def test_root_of_an_unknown_users_home_is_one_line(tmp_path, capsys):
    from search.doctor import main as doctor_main
    from trainers.train import main as train_main

    for main in (train_main, doctor_main):
        assert main(["space=smoke", "root=~no_such_user_xyz/runs"] if main is doctor_main
                    else ["root=~no_such_user_xyz/runs", "steps=0"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: root=~no_such_user_xyz/runs:") and "full path" in err and "\n" not in err


def test_mlflow_server_refuses_a_port_in_use_and_an_empty_host(tmp_path, capsys):
    import socket

    from mlflow_server.__main__ import main as server_main

    root = tmp_path / "runs"
    root.mkdir()
    (root / "mlflow.db").write_bytes(b"")  # parse() only asks that the store exists
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert server_main([f"root={root}", f"port={port}"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and f"port={port} on 127.0.0.1 cannot be used" in captured.err  # no links printed
    for host in ("host=", "host= "):
        assert server_main([f"root={root}", host]) == 2
        assert "must be an address to bind" in capsys.readouterr().err


def _npz_with_header(path, name: str, shape, payload: bytes = b"\0" * 64) -> None:
    """An .npz whose array ``name`` declares ``shape`` (uint8) over a few bytes of data."""
    import io
    import zipfile

    import numpy as np

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(f"{name}.npy", header.getvalue() + payload)


def test_hostile_npz_files_are_one_line_before_any_large_read(tmp_path):
    import numpy as np

    from trainers.fields import ConfigError
    from trainers.evaluate import read_arrays, read_samples

    huge = tmp_path / "huge.npz"
    _npz_with_header(huge, "images", (10 ** 12, 8, 8, 1))
    with pytest.raises(ConfigError, match=r"'images' declares shape \(1000000000000, 8, 8, 1\)"):
        read_samples(huge, None, 10)

    corrupt = tmp_path / "corrupt.npz"
    np.savez_compressed(corrupt, images=np.random.default_rng(0).integers(0, 255, (200, 8, 8, 1), dtype=np.uint8))
    data = bytearray(corrupt.read_bytes())
    data[200:400] = bytes(200)  # inside the deflate stream
    corrupt.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="cannot be read as an .npz of plain arrays"):
        read_samples(corrupt, None, 10)

    renamed = tmp_path / "renamed.npz"
    np.save(tmp_path / "plain.npy", np.zeros((4, 8, 8, 1), np.uint8))
    (tmp_path / "plain.npy").rename(renamed)
    with pytest.raises(ConfigError, match="cannot be read as an .npz of plain arrays"):
        read_samples(renamed, None, 10)

    # an array the command does not need is never read, however large it claims to be
    extra = tmp_path / "extra.npz"
    images = np.full((4, 8, 8, 1), 7, np.uint8)
    np.savez(extra, images=images)
    _npz_with_header(extra, "junk", (2 ** 40,))
    arrays, held = read_arrays(extra, str(extra), ("images", "labels", "draws"))
    assert list(arrays) == ["images"] and held == ["images", "junk"]
    assert (arrays["images"] == images).all()


def test_a_bad_override_among_thousands_is_named_alone():
    from trainers.config import parse_overrides
    from trainers.fields import ConfigError

    with pytest.raises(ConfigError) as e:
        parse_overrides([f"fixed.k{i}=1" for i in range(2000)] + ["steps=[1,"])
    assert str(e.value).startswith("cannot parse the argument 'steps=[1,': ") and len(str(e.value)) < 700
    with pytest.raises(ConfigError) as e:
        parse_overrides(["x=${nope}"])
    assert "x=${nope}" in str(e.value) and len(str(e.value)) < 700


def test_a_folder_nothing_can_be_written_in_is_one_line(tmp_path, capsys):
    """cache_dir=/proc/x passed the permission-bit check (root may write anywhere by the bits) and failed
    later with a traceback; the check now makes (and removes) a folder in the nearest existing parent."""
    from search.run import main as run_main
    from trainers.train import main as train_main

    root = tmp_path / "r"
    for main, args, key in ((train_main, ["cache_dir=/proc/x", f"root={root}", "steps=2"], "cache_dir"),
                            (train_main, ["workdir=/proc/x/w", f"root={root}", "steps=2"], "workdir"),
                            (run_main, ["space=smoke", f"root={root}", "fixed.cache_dir=/proc/x"], "fixed.cache_dir"),
                            (run_main, ["space=smoke", "root=/proc/x"], "root")):
        assert main(args) == 2, (args, capsys.readouterr().err)
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {key}=/proc/x") and "nothing can be written in /proc" in err, err
        assert "\n" not in err and "Traceback" not in err, err
    assert not root.exists() and not list(tmp_path.iterdir())  # the probe was removed


def test_printed_commands_paste_into_a_shell(tmp_path):
    """Every command the platform prints for a user to paste (resume, the MLflow UI, the doctor, the first
    run) reads back, through bash, as the words it was made of: a root with a space, a quote, $ and ;."""
    from search.report import check_study
    from search.run import resume_command
    from search.store_checks import doctor_command
    from search.stores import Stores
    from search.tracking import where_to_look
    from trainers.config import ConfigError

    stores = Stores.at(tmp_path / "my runs; it's $HOME")
    root = f"root={stores.root}"

    def words(command: str) -> list[str]:
        out = subprocess.run(["bash", "-c", f"printf '%s\\0' {command}"], capture_output=True, text=True, check=True)
        return out.stdout.split("\0")[:-1]

    resume = resume_command(["space=smoke", "fixed.steps=60", "root=elsewhere", "description=a b"], stores.root)
    assert words(resume) == ["python", "-m", "search.run", "space=smoke", "fixed.steps=60", "description=a b", root,
                             "resume=true"]
    ui = where_to_look(stores, "1")
    assert words(ui.split("   then open ")[0]) == ["python", "-m", "mlflow_server", root], ui
    markdown = where_to_look(stores, "1", markdown=True)
    assert words(markdown.split("`")[1]) == ["python", "-m", "mlflow_server", root], markdown
    assert words(doctor_command(stores, "smoke")) == ["python", "-m", "search.doctor", "space=smoke", root]
    with pytest.raises(ConfigError) as refused:  # the report's 'run it first'
        check_study(stores, "smoke")
    assert words(str(refused.value).split("run it first: ")[1]) == ["python", "-m", "search.run", "space=smoke", root]
