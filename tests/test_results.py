"""Results as data: a run's curve exported to CSV, the table and figures generated from the CSVs."""

import csv
import statistics
from pathlib import Path

import pytest
import yaml

from mbpo_pl.basis import REFERENCE_DIR, SeedStats, across_seeds, published_curves, window_mean
from mbpo_pl.cli import main
from mbpo_pl.plot import all_seeds_band
from mbpo_pl.results import export, last_window, plot, read_curve, return_at, runs_table, table, write_table
from mbpo_pl.results import main as results_main
from mbpo_pl.run_curves import dropped_evaluations

TINY = str(Path(__file__).parent / "conf" / "tiny.yaml")


def test_return_at_averages_the_last_5k_and_needs_the_step_reached():
    curve = [(step, float(step // 1000), 0.0) for step in range(1000, 52_001, 1000)]
    assert return_at(curve, 50_000) == pytest.approx((46 + 47 + 48 + 49 + 50) / 5)
    assert return_at(curve, 100_000) is None  # not reached
    assert return_at([], 50_000) is None
    assert last_window(125_000) == 5000 and last_window(5000) == 1000


def test_export_table_and_plot_from_a_real_run(logdir, tmp_path, capsys):
    main(["fit", "--config", TINY])
    run_dir = next(Path(logdir).rglob("events.out.tfevents.*")).parent
    results = tmp_path / "results"
    path = export([run_dir], results / "invertedpendulum_seed0.csv", hardware="test machine", note="a test")
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["env_steps", "eval_return", "wall_s"]
    assert [int(r["env_steps"]) for r in rows] == [200, 300]
    walls = [float(r["wall_s"]) for r in rows]
    assert 0 < walls[0] < walls[1]  # training seconds accumulate
    entry = yaml.safe_load((results / "runs.yaml").read_text())["invertedpendulum_seed0.csv"]
    assert {k: entry[k] for k in ("env_id", "seed", "algorithm", "precision", "hardware", "note")} == {
        "env_id": "InvertedPendulum-v5", "seed": 0, "algorithm": "MBPO", "precision": "32-true",
        "hardware": "test machine", "note": "a test",
    }  # fmt: skip
    assert len(entry["config_sha256"]) == 16 and entry["commits"] == [entry["starts"][0]["commit"]]
    assert entry["starts"][0]["env_steps"] == 0 and entry["starts"][0]["resumed_from"] is None

    # exporting the same run again updates its CSV; another curve at that path is refused unless --replace
    curve = read_curve(path)
    assert export([run_dir], path, hardware="test machine") == path and read_curve(path) == curve
    other = results / "other.csv"
    with other.open("w") as handle:
        handle.write("env_steps,eval_return,wall_s\n" + "".join(f"{s},{r + 1.0},{w}\n" for s, r, w in curve))
    manifest = yaml.safe_load((results / "runs.yaml").read_text())
    manifest["other.csv"] = {"note": "another run's"}
    (results / "runs.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(SystemExit) as refused:
        results_main(["export", str(run_dir), "-o", str(other)])
    assert refused.value.code == 2
    assert f"at 200 env steps its return is {curve[0][1] + 1:.6g}" in capsys.readouterr().err
    assert read_curve(other)[0][1] == curve[0][1] + 1  # untouched
    results_main(["export", str(run_dir), "-o", str(other), "--replace"])
    assert read_curve(other) == curve
    assert "note" not in yaml.safe_load((results / "runs.yaml").read_text())["other.csv"]  # the old entry went
    other.unlink()
    manifest = yaml.safe_load((results / "runs.yaml").read_text())
    del manifest["other.csv"]
    (results / "runs.yaml").write_text(yaml.safe_dump(manifest))

    markdown = table(results)
    (row,) = [line for line in markdown.splitlines() if line.startswith("| InvertedPendulum")]
    _, last, wall_s = read_curve(path)[-1]
    # a 300-step run: the last fifth (60 steps) holds the last evaluation; wall hours from the CSV's last wall_s
    wall_h = wall_s / 3600
    expected = f"| InvertedPendulum-v5 | MBPO | 0 | 300 | — | — | {last:,.0f} (n = 1) | — | — | — | {wall_h:.1f} |"
    assert row == expected
    (run_row,) = [line for line in runs_table(results).splitlines() if line.startswith("| [InvertedPendulum")]
    assert run_row.startswith("| [InvertedPendulum-v5](invertedpendulum_seed0.csv) | MBPO | 0 | 300 |")
    assert run_row.endswith(f"| 32-true | test machine | {entry['commits'][0]} |")

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results-table -->\nstale\n<!-- /results-table -->\nend\n")
    write_table(results, readme)
    text = readme.read_text()
    assert "stale" not in text and "| InvertedPendulum-v5 | MBPO |" in text and text.endswith("end\n")
    readme.write_text("intro\n<!-- results-runs -->\nstale\n<!-- /results-runs -->\nend\n")
    write_table(results, readme, "runs")
    assert "(results/invertedpendulum_seed0.csv)" in readme.read_text()

    (figure,) = plot(results, tmp_path / "figures")
    assert figure.name == "invertedpendulum.png" and figure.read_bytes()[:4] == b"\x89PNG"


def test_export_keeps_a_curve_it_would_lose_evaluations_of():
    """A curve is overwritten only by one holding all its evaluations: the same run, further on."""
    run = [(1000, 10.0, 5.0), (2000, 20.0, 9.0), (3000, 30.0, 14.0)]
    assert dropped_evaluations(run[:2], run) is None  # the same run, exported after more training
    assert dropped_evaluations(run, [(s, r, w + 1) for s, r, w in run]) is None  # wall seconds may differ
    longer = dropped_evaluations(run, run[:2])
    assert longer == (
        "1 of its 3 evaluations are not this run's (it goes on to 3,000 env steps, this run only to 2,000; "
        "its 2 evaluations before 3,000 env steps agree exactly)"
    )
    parted = dropped_evaluations(run, [run[0], (2000, 21.0, 9.0), run[2]])
    assert parted.startswith("1 of its 3 evaluations are not this run's (at 2,000 env steps its return is 20, ")
    assert parted.endswith("this run's 21; its 1 evaluation before 2,000 env steps agree exactly)")
    assert "no evaluation at 2,000" in dropped_evaluations(run, [run[0], run[2]])
    assert dropped_evaluations(run, [(s, r + 1, w) for s, r, w in run]).startswith("3 of its 3 evaluations")


def test_committed_tables_are_generated_from_the_committed_csvs():
    """The README's results table and docs/results.md's run table are what `results table --write` produces."""
    root = Path(__file__).parents[1]
    for document, which, generate in (("README.md", "results-table", table), ("docs/results.md", "results-runs",
                                                                              runs_table)):  # fmt: skip
        text = (root / document).read_text()
        block = text.split(f"<!-- {which} -->\n", 1)[1].split(f"\n<!-- /{which} -->", 1)[0]
        prefix = "docs/results/" if document == "README.md" else "results/"
        assert block == generate(root / "docs" / "results").replace("](", "](" + prefix), document


def _write_run(results: Path, name: str, env_id: str, seed: int, curve: list[tuple[int, float]],
               algorithm: str = "MBPO") -> None:  # fmt: skip
    results.mkdir(parents=True, exist_ok=True)
    with (results / name).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["env_steps", "eval_return", "wall_s"])
        writer.writerows((step, ret, step / 10) for step, ret in curve)
    manifest_path = results / "runs.yaml"
    manifest = yaml.safe_load(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest[name] = {"env_id": env_id, "seed": seed, "precision": "32-true", "hardware": "test machine",
                      "algorithm": algorithm}  # fmt: skip
    manifest_path.write_text(yaml.safe_dump(manifest))


def test_fair_basis_on_a_hand_made_curve():
    """Per seed the mean of its evaluations in (X - 5k, X]; then mean, sample std (ddof 1) and n over the seeds
    that reached X."""
    a = [(1000 * i, float(i)) for i in range(1, 53)]  # evaluations every 1k: the window (45k, 50k] holds 46..50
    b = [(2500 * i, 100.0) for i in range(1, 21)]  # every 2.5k to 50k: (45k, 50k] holds 47.5k and 50k
    c = [(1000 * i, 7.0) for i in range(1, 40)]  # stops at 39k: no value at 50k
    assert window_mean(a, 50_000) == pytest.approx(48.0)
    assert window_mean(b, 50_000) == 100.0 and window_mean(c, 50_000) is None
    stats = across_seeds([a, b, c], 50_000)
    assert stats.n == 2 and stats.mean == pytest.approx(74.0)
    assert stats.std == pytest.approx(((48 - 74) ** 2 + (100 - 74) ** 2) ** 0.5)  # ddof 1 over 2 seeds
    single = across_seeds([a], 50_000)
    assert (single.n, single.std) == (1, None)
    published = SeedStats(60.0, 10.0, 5)
    assert stats.sigmas_from(published) == pytest.approx(1.4) and stats.overlaps(published)
    assert not SeedStats(80.0, 5.0, 3).overlaps(SeedStats(60.0, 10.0, 5))  # 75..85 vs 50..70


def test_published_curves_read_to_the_same_figures_as_a_direct_computation():
    """The committed reference CSVs through `published_curves` + `across_seeds` against a computation straight from
    the file, and against the figures the issue quoted from the same files (MBPO at 50k, n = 5)."""
    for algorithm, env, quoted in [("mbpo", "Hopper", (1441, 836)), ("mbpo", "Walker2d", (772, 547)),
                                   ("mbpo", "HalfCheetah", (7804, 592)), ("mbpo", "Ant", (781, 207)),
                                   ("mbpo", "Humanoid", (394, 100)), ("sac", "Walker2d", (1006, 1034))]:  # fmt: skip
        rows = list(csv.DictReader((REFERENCE_DIR / algorithm / f"{env}.csv").open()))
        per_seed: dict[float, list[float]] = {}
        for row in rows:
            if 45_000 < float(row["step"]) <= 50_000:
                per_seed.setdefault(float(row["seed"]), []).append(float(row["reward"]))
        values = [statistics.fmean(v) for v in per_seed.values()]
        published = published_curves(algorithm, f"{env}-v5")
        stats = across_seeds(list(published.curves.values()), 50_000)
        assert stats.n == len(values) == (5 if algorithm == "mbpo" else 8)
        assert stats.mean == pytest.approx(statistics.fmean(values))
        assert stats.std == pytest.approx(statistics.stdev(values))
        assert (round(stats.mean), round(stats.std)) == quoted


def test_table_puts_our_seeds_beside_the_published_curves(tmp_path):
    results = tmp_path / "results"
    flat = lambda value, last: [(step, value) for step in range(1000, last + 1, 1000)]  # noqa: E731
    later = [(step, 4000.0) for step in range(51_000, 100_001, 1000)]
    _write_run(results, "hopper_seed0.csv", "Hopper-v5", 0, flat(1000.0, 50_000) + later)
    _write_run(results, "hopper_seed1.csv", "Hopper-v5", 1, flat(2000.0, 60_000))
    _write_run(results, "hopper_seed2.csv", "Hopper-v5", 2, flat(3000.0, 50_000))
    _write_run(results, "hopper_sac_seed0.csv", "Hopper-v5", 0, flat(500.0, 100_000), algorithm="SAC")
    lines = table(results).splitlines()
    rows = [line.split(" | ") for line in lines[2:] if line.startswith("| ")]
    keys = [(row[0].lstrip("| "), row[1]) for row in rows]
    assert keys[:4] == [("Hopper-v5", "MBPO"), ("Hopper-v5", "published MBPO"), ("Hopper-v5", "SAC"),
                        ("Hopper-v5", "published SAC")]  # fmt: skip
    assert ("Ant-v5", "MBPO") in keys and rows[keys.index(("Ant-v5", "MBPO"))][2] == "no run yet"
    mbpo = rows[0]
    # all three reached 50k: mean 2000, sample std 1000; only seed 0 reached 100k; the last-step column is at the
    # least step all reached (50k); published MBPO at 50k on the same basis: 1,441 ± 836 (n = 5)
    assert mbpo[2:7] == ["0, 1, 2", "50,000", "2,000 ± 1,000 (n = 3)", "4,000 (n = 1)", "2,000 ± 1,000 (n = 3)"]
    assert mbpo[7] == f"{(2000 - 1441.4) / 835.8:+.1f} σ, bands overlap"
    assert rows[1][4] == "1,441 ± 836 (n = 5)"
    # at the least step all seeds reached (50k), against the published MBPO at 50k on the same basis
    assert mbpo[9] == mbpo[7]
    sac = rows[2]
    assert sac[4:6] == ["500 (n = 1)", "500 (n = 1)"] and sac[8] == f"{(500 - 2667) / 802:+.1f} σ, bands apart"
    assert sac[9] == sac[8]  # its last step is 100k
    assert "* Hopper-v5: no healthy reward on the falling step (1 less per fall)" in lines


def test_our_band_stops_where_the_shortest_seed_ends():
    # Seed 0 reaches 20k, seed 1 only 12k: a mean past 12k would be seed 0 alone under an "n = 2" label.
    long = [(step, 100.0, 0.0) for step in range(1000, 20_001, 1000)]
    short = [(step, 300.0, 0.0) for step in range(1000, 12_001, 1000)]
    band = all_seeds_band([[(s, r) for s, r, _ in curve] for curve in (long, short)])
    assert [step for step, _ in band] == list(range(5000, 12_001, 1000))
    assert all(stats.n == 2 and stats.mean == 200.0 for _, stats in band)
