"""Results as data: a run's curve exported to CSV, the table and figures generated from the CSVs."""

import csv
from pathlib import Path

import pytest
import yaml

from mbpo_pl.cli import main
from mbpo_pl.results import export, last_window, plot, read_curve, return_at, table, write_table

TINY = str(Path(__file__).parent / "conf" / "tiny.yaml")


def test_return_at_averages_the_last_5k_and_needs_the_step_reached():
    curve = [(step, float(step // 1000), 0.0) for step in range(1000, 52_001, 1000)]
    assert return_at(curve, 50_000) == pytest.approx((46 + 47 + 48 + 49 + 50) / 5)
    assert return_at(curve, 100_000) is None  # not reached
    assert return_at([], 50_000) is None
    assert last_window(125_000) == 5000 and last_window(5000) == 1000


def test_export_table_and_plot_from_a_real_run(logdir, tmp_path):
    main(["fit", "--config", TINY])
    run_dir = next(Path(logdir).rglob("events.out.tfevents.*")).parent
    results = tmp_path / "results"
    path = export([run_dir], results / "invertedpendulum_seed0.csv", hardware="test machine")
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["env_steps", "eval_return", "wall_s"]
    assert [int(r["env_steps"]) for r in rows] == [200, 300]
    walls = [float(r["wall_s"]) for r in rows]
    assert 0 < walls[0] < walls[1]  # training seconds accumulate
    manifest = yaml.safe_load((results / "runs.yaml").read_text())
    assert manifest["invertedpendulum_seed0.csv"] == {
        "env_id": "InvertedPendulum-v5", "seed": 0, "precision": "32-true", "hardware": "test machine"
    }  # fmt: skip

    markdown = table(results)
    (row,) = [line for line in markdown.splitlines() if line.startswith("| [InvertedPendulum")]
    assert row.startswith("| [InvertedPendulum-v5](invertedpendulum_seed0.csv) | 0 | 300 | — |")
    _, last, wall_s = read_curve(path)[-1]
    # a 300-step run: the last fifth (60 steps) holds the last evaluation; wall hours from the CSV's last wall_s
    assert f"| {last:,.0f} | {wall_s / 3600:.1f} |" in row

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results-table -->\nstale\n<!-- /results-table -->\nend\n")
    write_table(results, readme)
    text = readme.read_text()
    assert "stale" not in text and "(results/invertedpendulum_seed0.csv)" in text and text.endswith("end\n")

    (figure,) = plot(results, tmp_path / "figures")
    assert figure.name == "invertedpendulum.png" and figure.read_bytes()[:4] == b"\x89PNG"


def test_committed_readme_table_is_generated_from_the_committed_csvs():
    """The README's results table is exactly what `results table --write README.md` produces (no drift)."""
    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text()
    block = readme.split("<!-- results-table -->\n", 1)[1].split("\n<!-- /results-table -->", 1)[0]
    expected = table(root / "docs" / "results").replace("](", "](docs/results/")
    assert block == expected


def _write_run(results: Path, name: str, env_id: str, seed: int, curve: list[tuple[int, float]]) -> None:
    results.mkdir(parents=True, exist_ok=True)
    with (results / name).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["env_steps", "eval_return", "wall_s"])
        writer.writerows((step, ret, step / 10) for step, ret in curve)
    manifest_path = results / "runs.yaml"
    manifest = yaml.safe_load(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest[name] = {"env_id": env_id, "seed": seed, "precision": "32-true", "hardware": "test machine"}
    manifest_path.write_text(yaml.safe_dump(manifest))


def test_table_summarises_seeds_and_lists_paper_envs_without_a_run(tmp_path):
    results = tmp_path / "results"
    flat = lambda value, last: [(step, value) for step in range(1000, last + 1, 1000)]  # noqa: E731
    later = [(step, 4000.0) for step in range(51_000, 100_001, 1000)]
    _write_run(results, "hopper_seed0.csv", "Hopper-v5", 0, flat(1000.0, 50_000) + later)
    _write_run(results, "hopper_seed1.csv", "Hopper-v5", 1, flat(2000.0, 60_000))
    _write_run(results, "hopper_seed2.csv", "Hopper-v5", 2, flat(3000.0, 50_000))
    lines = table(results).splitlines()
    envs = [line.split(" | ")[0].lstrip("| ") for line in lines[2:]]
    assert envs == ["Ant-v5", "HalfCheetah-v5", "[Hopper-v5](hopper_seed0.csv)", "[Hopper-v5](hopper_seed1.csv)",
                    "[Hopper-v5](hopper_seed2.csv)", "Hopper-v5: 3 seeds", "Humanoid-v5", "Walker2d-v5"]  # fmt: skip
    seeds = lines[2 + envs.index("Hopper-v5: 3 seeds")].split(" | ")
    # all three reached 50k: mean 2000, sample std 1000, (2000 - 1702) / 799 = +0.4 paper σ; only seed 0 reached
    # 100k: (4000 - 3315) / 334 = +2.1 σ; the last-step column is at the least step all reached (50k), not a mean
    # of each seed's own last step (4000, 2000, 3000)
    assert seeds[1:5] == ["0, 1, 2", "50,000 (least)", "2,000 ± 1,000 (+0.4 σ)", "1,702 ± 799"]
    assert seeds[5] == "4,000 (n = 1, +2.1 σ)" and seeds[7] == "2,000 ± 1,000"
    seed1 = lines[2 + envs.index("[Hopper-v5](hopper_seed1.csv)")].split(" | ")
    assert seed1[3:7] == ["2,000 (+0.4 σ)", "1,702 ± 799", "—", "3,315 ± 334"]  # (2000 - 1702) / 799
    ant = lines[2].split(" | ")
    assert ant[1:7] == ["—", "no run yet", "—", "782 ± 229", "—", "1,453 ± 876"]
    # the last column says how the v5 env differs from the paper's v2 env
    assert lines[0].endswith("| v5 vs the paper's v2 |")
    assert ant[-1].startswith("no healthy reward on the falling step (1 less per fall); MuJoCo 3 contacts")
    assert lines[2 + envs.index("HalfCheetah-v5")].endswith("| none |")
