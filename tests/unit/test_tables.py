"""Tables 2, 1, 3, 4, 5 and the figures from hand-made curves whose AUES and MU95 are known."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unloc import io
from unloc.figures import FIGURES, plot_figure, read_probes
from unloc.geffect import COLUMNS as GEFFECT_COLUMNS
from unloc.io import ArtifactError
from unloc.localizers import LOCALIZERS
from unloc.objectives import OBJECTIVES
from unloc.registry import parse_settings
from unloc.stats import StatsSettings
from unloc.tables import (
    GEFFECT_METRICS,
    GEFFECT_TABLE1_COLUMNS,
    ORIGINAL,
    SECTION3_COLUMNS,
    TABLE2_COLUMNS,
    TABLES,
    read_curves,
    table2,
    write_table,
)

STATS = {"n_resamples": 500}
SETTINGS = parse_settings(StatsSettings, STATS, "stats")
REPORT = Path(__file__).resolve().parents[2] / "workflow" / "report"
ALPHA = np.linspace(0, 1, 11)


def write_curve(root, objective, localizer, seed, rs_level, fq_shift=0.0, scenario="injected"):
    """FS from 0 to 1 with RS = rs_level constant (AUES = rs_level); MU falls linearly from 1 to
    0.5, so it reaches 95% of θo's MU at α = 0.1, where log10 FQ = -1 - fq_shift. The labels are
    columns of the curve; the path says nothing (its parts are shuffled on purpose)."""
    path = root / f"s{seed}-{localizer}-{objective}.csv"
    frame = pd.DataFrame({"scenario": scenario, "objective": objective, "localizer": localizer, "seed": seed,
                          "alpha": ALPHA, "fs": ALPHA, "rs": np.full_like(ALPHA, rs_level),
                          "mu": 1 - 0.5 * ALPHA, "log10_fq": -10 * ALPHA - fq_shift})
    frame.to_csv(path, index=False)
    return str(path)


@pytest.fixture
def curves(tmp_path):
    paths = []
    for seed, jitter in zip((7, 19, 31), (0.0, 0.01, -0.01)):
        paths.append(write_curve(tmp_path, "npo", "oracle", seed, 0.8 + jitter))
        paths.append(write_curve(tmp_path, "npo", "random", seed, 0.6 + jitter, fq_shift=2.0))
    return paths


def test_table2_values_from_known_curves(curves):
    table = table2(read_curves(curves), SETTINGS, "tiny")
    assert list(table.columns) == TABLE2_COLUMNS
    table = table.set_index("metric")
    aues, mu95 = table.loc["AUES"], table.loc["MU95"]
    assert aues["oracle_mean"] == pytest.approx(0.8)
    assert aues["random_mean"] == pytest.approx(0.6)
    assert aues["oracle_std"] == pytest.approx(0.01)
    assert aues["abs_diff_mean"] == pytest.approx(0.2) and aues["abs_diff_std"] == pytest.approx(0.0, abs=1e-12)
    assert aues["p_value"] < 0.01
    assert aues["ci_low"] == pytest.approx(0.2) and aues["ci_high"] == pytest.approx(0.2)
    assert aues["tost_p"] > 0.5  # 0.2 apart is not equivalent within ±0.02
    assert mu95["oracle_mean"] == pytest.approx(-1.0)  # MU = 0.95 at α = 0.1, where log10 FQ = -1
    assert mu95["random_mean"] == pytest.approx(-3.0)  # the same crossing, FQ shifted by 2


@pytest.fixture
def sanity_csv(tmp_path):
    from unloc.sanity import SanitySettings, check_rows, write

    results = {"theta_r": {"es_forget": 0.1, "es_retain": 0.9}, "theta_o[s7]": {"es_forget": 0.9, "es_retain": 0.9}}
    write(tmp_path / "sanity.csv", check_rows(results, SanitySettings()))
    return tmp_path / "sanity.csv"


def test_table2_files(curves, tmp_path, sanity_csv):
    write_table("table2", STATS, curves, "tiny", tmp_path / "t.csv", tmp_path / "t.md", sanity_csv)
    md = (tmp_path / "t.md").read_text()
    assert "Table 2: Random vs Oracle (tiny)" in md
    assert "| NPO | AUES (↑) | 0.600 ± 0.010 | 0.800 ± 0.010 |" in md
    assert pd.read_csv(tmp_path / "t.csv").shape == (2, len(TABLE2_COLUMNS) + 1)  # + the sanity verdict


@pytest.mark.parametrize("name", [spec.name for spec in FIGURES.specs() if spec.runs not in ("geffect", "wme")])
def test_every_figure_is_written_as_png_and_pdf(curves, tmp_path, name, sanity_csv):
    plot_figure(name, curves, "tiny", tmp_path / f"{name}.png", tmp_path / f"{name}.pdf", sanity_csv)
    assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / f"{name}.pdf").read_bytes()[:4] == b"%PDF"


def probe_logs(root) -> list[str]:
    """G-effect probe logs at the workflow's layout: 2 objectives x 2 splits, the lm group NaN (tied)."""
    paths = []
    for split in ("forget01", "forget10"):
        for k, objective in enumerate(("ga", "npo")):
            steps = np.arange(0, 6)
            rows = {"step": steps, **{c: -(k + 1.0) * (steps + 1) for c in GEFFECT_COLUMNS if c != "step"}}
            rows.update(e_u_lm=np.nan, e_r_lm=np.nan)
            path = root / split / objective / "probe.csv"
            path.parent.mkdir(parents=True)
            pd.DataFrame(rows, columns=GEFFECT_COLUMNS).to_csv(path, index=False)
            paths.append(str(path))
    return paths


@pytest.mark.parametrize("name", [spec.name for spec in FIGURES.specs() if spec.runs == "geffect"])
def test_every_probe_figure_is_written_from_probe_logs_and_refuses_a_curve(curves, tmp_path, name):
    plot_figure(name, probe_logs(tmp_path / "geffect"), "tiny", tmp_path / f"{name}.png", tmp_path / f"{name}.pdf")
    assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert [(log.split, log.objective) for log in read_probes(probe_logs(tmp_path / "again"))] == [
        ("forget01", "ga"), ("forget01", "npo"), ("forget10", "ga"), ("forget10", "npo")]
    with pytest.raises(ArtifactError, match="not a G-effect probe log"):
        plot_figure(name, curves[:1], "tiny", tmp_path / "x.png", tmp_path / "x.pdf")


@pytest.mark.parametrize("name", [*TABLES.names(), *FIGURES.names()])
def test_every_table_and_figure_has_a_report_caption_and_reads_curve_columns(name):
    assert (REPORT / f"{name}.rst").read_text().strip()
    spec = TABLES[name] if name in TABLES else FIGURES[name]
    assert spec.help and spec.needs


def test_a_curve_without_its_label_columns_is_refused(tmp_path):
    path = tmp_path / "curve.csv"
    pd.DataFrame({"alpha": ALPHA, "fs": ALPHA}).to_csv(path, index=False)
    with pytest.raises(ArtifactError, match=f"{path}: not a mixing curve .*scenario, objective, localizer, seed"):
        read_curves([str(path)])


# --------------------------------------------------------------------------- Section 3 (Tables 1, 3, 4, 5)


def section3_curves(root, fq_shift=0.0):
    """Table 1's sweeps from θfull: Random over seeds 7, 19, 99 (AUES 0.6 ± 0.01), Activations and
    WAGLE run once (their masks do not depend on the seed; AUES 0.8 and 0.6), MemFlex per seed
    (AUES 0.5 ± 0.01, MU95 2 lower)."""
    write = lambda loc, seed, rs, shift=fq_shift: write_curve(root, "npo", loc, seed, rs, shift, ORIGINAL)  # noqa: E731
    paths = []
    for seed, jitter in zip((7, 19, 99), (0.0, 0.01, -0.01)):
        paths += [write("random", seed, 0.6 + jitter), write("memflex", seed, 0.5 + jitter, fq_shift + 2)]
    return paths + [write("activations", 7, 0.8), write("wagle", 7, 0.6)]


def test_every_section3_table_names_registered_runs():
    section3 = [spec for spec in TABLES.specs() if spec.scenario == ORIGINAL]
    assert {spec.name for spec in section3} == {"table1", "table3", "table4", "table5"}
    for spec in section3:
        assert spec.objective in OBJECTIVES and 0 < spec.ratio <= 1 and spec.title
        assert all(name in LOCALIZERS for name in spec.localizers)
        assert LOCALIZERS[spec.localizers[0]].seeded  # the baseline spans the seeds
        assert (REPORT / f"{spec.name}.rst").is_file()
    # each of Tables 3-5 changes one thing of Table 1 (App. E.1)
    assert (TABLES["table3"].ratio, TABLES["table4"].objective, TABLES["table5"].ratio) == (0.05, "rmu", 0.8)
    assert {LOCALIZERS[n].granularity for n in TABLES["table5"].localizers} == {"elements"}


def test_table1_values_from_known_curves(tmp_path):
    table = TABLES["table1"].fn(read_curves(section3_curves(tmp_path, fq_shift=3.0)), SETTINGS, "tiny")
    assert list(table.columns) == SECTION3_COLUMNS
    rows = table.set_index(["localizer", "metric"])
    assert rows.loc[("original", "MU95"), "mean"] == pytest.approx(-3.0)  # θfull's log10 FQ (α = 0)
    random, memflex = rows.loc[("random", "AUES")], rows.loc[("memflex", "AUES")]
    assert (random["mean"], random["std"], random["n_seeds"]) == (pytest.approx(0.6), pytest.approx(0.01), 3)
    assert math.isnan(random["p_value"])  # the baseline is not tested against itself
    assert (memflex["mean"], memflex["n_seeds"]) == (pytest.approx(0.5), 3)
    assert memflex["ci_low"] == pytest.approx(-0.1) and memflex["ci_high"] == pytest.approx(-0.1)  # paired by seed
    activations = rows.loc[("activations", "AUES")]
    assert (activations["mean"], activations["n_seeds"]) == (pytest.approx(0.8), 1)
    assert activations["p_value"] < 0.01
    # one run compared with each Random seed: 0.8 - (0.6, 0.61, 0.59)
    assert activations["ci_low"] == pytest.approx(0.19) and activations["ci_high"] == pytest.approx(0.21)
    assert math.isnan(activations["tost_p"])  # no seed-level spread of its own
    wagle = rows.loc[("wagle", "AUES")]
    assert wagle["mean"] == pytest.approx(0.6) and wagle["p_value"] > 0.2  # as good as Random
    assert rows.loc[("random", "MU95"), "mean"] == pytest.approx(-4.0)  # MU at 95% at α = 0.1: -1 - 3
    assert rows.loc[("memflex", "MU95"), "mean"] == pytest.approx(-6.0)


def test_section3_markdown_prints_the_papers_layout(tmp_path):
    write_table("table1", STATS, section3_curves(tmp_path, 1.0), "tiny", tmp_path / "t.csv", tmp_path / "t.md")
    md = (tmp_path / "t.md").read_text()
    assert "### Table 1: localization methods vs Random (tiny)" in md
    assert "| Original | – | -1.00 |  |  |  |  |" in md
    assert "| Random | 0.600 ± 0.010 | **-2.00 ± 0.00** |  |  |  |  |" in md  # best MU95 (tied) in bold
    assert "| Activations | **0.800** | **-2.00** | 0.00 | 1.00 | [0.190, 0.210] | [0.00, 0.00] |" in md  # one run
    assert "| MemFlex | 0.500 ± 0.010 | -4.00 ± 0.00 |" in md
    assert "NPO on 10% of the down_proj value vectors" in md
    assert "sanity" not in pd.read_csv(tmp_path / "t.csv").columns  # θfull rests on no injection


def test_section3_table_refuses_missing_or_duplicate_runs(tmp_path):
    paths = section3_curves(tmp_path)
    wagle_again = write_curve(tmp_path, "npo", "wagle", 19, 0.6, scenario=ORIGINAL)
    with pytest.raises(ArtifactError, match="expected one sweep of wagle"):
        TABLES["table1"].fn(read_curves([*paths, wagle_again]), SETTINGS, "tiny")
    no_memflex_19 = [p for p in paths if not p.endswith("s19-memflex-npo.csv")]
    with pytest.raises(ArtifactError, match=r"no sweep of memflex for the seeds \[19\]"):
        TABLES["table1"].fn(read_curves(no_memflex_19), SETTINGS, "tiny")
    injected_only = [write_curve(tmp_path, "npo", "random", 7, 0.6)]
    with pytest.raises(ArtifactError, match="no sweep of its baseline random"):
        TABLES["table1"].fn(read_curves(injected_only), SETTINGS, "tiny")


# --------------------------------------------------------------------------- Table 6 (App. E.2)


def test_table6_is_aues_of_oracle_vs_random_from_es_only_curves(tmp_path, sanity_csv):
    # The PII experiment scores ES only: its curves have no MU or FQ column. Equal means, unequal
    # seeds: |Δ| is the mean per-seed difference (1/15), not the 0 between the means.
    paths = []
    for seed, oracle, random in ((7, 0.8, 0.7), (19, 0.6, 0.7), (99, 0.7, 0.7)):
        for localizer, level in (("oracle", oracle), ("random", random)):
            path = write_curve(tmp_path, "npo", localizer, seed, level)
            pd.read_csv(path).drop(columns=["mu", "log10_fq"]).to_csv(path, index=False)
            paths.append(path)
    table = write_table("table6", STATS, paths, "tiny", tmp_path / "t6.csv", tmp_path / "t6.md", sanity_csv)
    assert list(table["metric"]) == ["AUES"]
    row = table.iloc[0]
    assert row["oracle_mean"] == pytest.approx(0.7) and row["random_mean"] == pytest.approx(0.7)
    assert row["oracle_std"] == pytest.approx(0.1) and row["random_std"] == pytest.approx(0.0)
    assert row["abs_diff_mean"] == pytest.approx(0.2 / 3)
    assert row["p_value"] > 0.5  # +0.1, -0.1, 0: no direction
    assert row["ci_low"] < 0 < row["ci_high"]
    md = (tmp_path / "t6.md").read_text()
    assert md.startswith("### Table 6: Random vs Oracle on PII records (tiny)")
    assert "| AUES (↑) | 0.700 ± 0.000 | 0.700 ± 0.100 | 0.067 |" in md
    assert TABLES["table6"].needs == ("fs", "rs")


# --------------------------------------------------------------------------- seeds/001 Table 1


def geffect_evals(root, methods=("theta_full", "ga", "wtnpo")) -> list[str]:
    """TOFU_EVAL.json files at the workflow's layout, each metric's agg_value known: 0.1 x the
    metric's position + 0.01 x the method's, FQ = exp(-2 - method position)."""
    paths = []
    for split in ("forget01", "forget10"):
        for j, method in enumerate(methods):
            results = {m: {"agg_value": 0.1 * i + 0.01 * j} for i, m in enumerate(GEFFECT_METRICS)}
            results["forget_quality"] = {"agg_value": math.exp(-2 - j)}
            path = root / split / "eval" / method / "TOFU_EVAL.json"
            io.write_json(path, results)
            paths.append(str(path))
    return paths


def test_geffect_table1_puts_each_metric_in_its_column_and_fq_as_ln(tmp_path):
    table = write_table("geffect_table1", {}, geffect_evals(tmp_path / "g"), "tiny", tmp_path / "t.csv",
                        tmp_path / "t.md")
    assert list(table.columns) == GEFFECT_TABLE1_COLUMNS
    assert list(zip(table["split"], table["method"])) == [
        (s, m) for s in ("forget01", "forget10") for m in ("before unlearning", "GA", "WTNPO")]
    position = {m: i for i, m in enumerate(GEFFECT_METRICS)}
    wtnpo = table.iloc[2]
    for column, metric in (("es_exact_unlearn", "extraction_strength"),
                           ("es_exact_retain", "retain_extraction_strength"),
                           ("es_perturb_unlearn", "forget_para_extraction_strength"),
                           ("es_perturb_retain", "retain_para_extraction_strength"), ("mu", "model_utility")):
        assert wtnpo[column] == pytest.approx(0.1 * position[metric] + 0.02), column
    assert list(table["ln_fq"]) == pytest.approx([-2, -3, -4] * 2)
    md = (tmp_path / "t.md").read_text()
    assert "| forget10 | WTNPO | 0.4200 | 0.3200 | 0.6200 | 0.5200 | 0.2200 | -4.0000 |" in md
    assert pd.read_csv(tmp_path / "t.csv").shape == (6, len(GEFFECT_TABLE1_COLUMNS))  # no sanity column


def test_geffect_table1_refuses_an_evaluation_without_its_metrics(tmp_path):
    paths = geffect_evals(tmp_path / "g")
    results = io.read_json(paths[0])
    del results["retain_para_extraction_strength"]
    io.write_json(paths[0], results)
    with pytest.raises(ArtifactError, match="no retain_para_extraction_strength"):
        write_table("geffect_table1", {}, paths, "tiny", tmp_path / "t.csv", tmp_path / "t.md")
