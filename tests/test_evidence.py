"""The evidence studies (spaces/evidence_*.yaml): valid, within their CPU budget's shape, and
deterministic on the CPU — a reduced run twice with the same seeds gives the same ablation table."""

from __future__ import annotations

import pytest

from search.spaces import load_space

from test_search_e2e import optuna_states, run_cli


def test_evidence_spaces_cover_the_claims():
    damage = load_space("evidence_damage")
    cells = {(c["method"], c["imbalance"], c.get("imbalance_profile", "exp")) for c in damage.grid()}
    assert cells == {(m, rho, p) for m in ("dcgan", "contrad", "damage")
                     for rho, p in ((10, "exp"), (100, "exp"), (100, "balanced_partial"))}
    assert len(damage.seeds) >= 6 and damage.fixed["prune_ratio"] == 0.9 and damage.fixed["dataset"] == "mnist"
    gsr = load_space("evidence_gsr")
    assert {(c["gsr_lambda"], c["lecam_lambda"], c.get("diffaugment"), c["imbalance"]) for c in gsr.grid()} == {
        (lam, lecam, aug, rho) for lam in (0.0, 0.5) for lecam, aug in ((0.0, None), (0.3, "color,translation,cutout"))
        for rho in (10, 100)}
    assert len(gsr.seeds) >= 6 and gsr.fixed["method"] == "cgan" and gsr.fixed["dataset"] == "mnist"


def ablation_table(report_text: str) -> list[str]:
    lines = report_text.split("## Ablation table", 1)[1].split("\n## ", 1)[0].splitlines()
    return [line for line in lines if line.startswith("|")]


@pytest.mark.slow
@pytest.mark.parametrize("space", ["evidence_damage", "evidence_gsr"])
def test_reduced_evidence_study_twice_gives_the_same_table(tmp_path, space):
    reduced = ["seeds=[0]", "fixed.steps=8", "fixed.eval_every=4", "fixed.ch=4", "fixed.eval.num_samples=200",
               "fixed.eval.judge_epochs=5"]
    tables = []
    for attempt in ("first", "second"):
        root = tmp_path / attempt
        proc = run_cli([f"space={space}", f"root={root}", *reduced], timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        cells = len(load_space(space).grid())
        assert optuna_states(root, space) == {"COMPLETE": cells}
        tables.append(ablation_table((root / "reports" / space / "report.md").read_text()))
    first, second = tables
    assert len(first) == 2 + len(load_space(space).grid())  # header, rule, one row per cell
    assert all("(n=1)" in row for row in first[2:]), first  # every cell has a finished, finite FID
    assert first == second
