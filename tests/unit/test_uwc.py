"""seeds/001's UWC: the selection on sweeps whose answer is known by construction, the curve
metrics a sweep must score, and Tables 2-10 built from curve files."""

import pandas as pd
import pytest

from unloc import io
from unloc.registry import ConfigError
from unloc.tables import BEFORE_UNLEARNING, TABLES, UWC, write_table
from unloc.uwc import UwcSettings, select, sweep_metrics


def sweep(mu, es_forget):
    alphas = [i / (len(mu) - 1) for i in range(len(mu))]
    return pd.DataFrame({"alpha": alphas, "mu": mu, "es_forget": es_forget, "es_retain": mu,
                         "es_para_forget": es_forget, "es_para_retain": mu})


def test_selection_takes_the_most_removal_within_the_budget():
    curve = sweep(mu=[0.50, 0.48, 0.46, 0.44, 0.10], es_forget=[0.9, 0.6, 0.3, 0.2, 0.0])
    # 10%: MU >= 0.45, so α = 0.5 (ES 0.3); α = 0.75 (MU 0.44) and α = 1 are over budget
    assert select(curve, "mu", 0.10, "es_forget")["alpha"] == 0.5
    assert select(curve, "mu", 0.05, "es_forget")["alpha"] == 0.25  # MU >= 0.475
    assert select(curve, "mu", 1.0, "es_forget")["alpha"] == 1.0  # no budget: the full run
    assert select(curve, "mu", 0.0, "es_forget")["alpha"] == 0.0  # no drop allowed: θfull


def test_selection_breaks_ties_towards_theta_full_and_reads_the_alpha_zero_point():
    curve = sweep(mu=[0.5, 0.5, 0.5, 0.5], es_forget=[0.9, 0.2, 0.2, 0.4])
    assert select(curve.iloc[::-1], "mu", 0.1, "es_forget")["alpha"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="α = 0"):
        select(curve.iloc[1:], "mu", 0.1, "es_forget")
    with pytest.raises(ValueError, match="model_utility"):
        select(curve, "model_utility", 0.1, "es_forget")


def test_a_sweep_scores_the_tables_columns_and_what_the_selection_reads():
    assert sweep_metrics(UwcSettings()) == ("es", "es_perturb", "mu")
    assert sweep_metrics(UwcSettings(measure="es_retain")) == ("es", "es_perturb")
    assert sweep_metrics(UwcSettings(measure="retain_rouge")) == ("es", "es_perturb", "mu")
    with pytest.raises(ConfigError, match=r"geffect.uwc.measure: 'log10_fq' is not a curve column .*allowed: "):
        sweep_metrics(UwcSettings(measure="log10_fq"))


def write_sweeps(root, table, sweeps):
    paths = []
    for (split, value), frame in sweeps.items():
        path = root / split / UWC / table / f"{value}" / "curve.csv"
        path.parent.mkdir(parents=True)
        frame.to_csv(path, index=False)
        paths.append(str(path))
    return paths


def test_a_uwc_table_lists_theta_full_then_each_values_selected_mixture(tmp_path):
    sweeps = {("forget05", 5.0): sweep([0.5, 0.47, 0.3], [0.8, 0.4, 0.1]),
              ("forget05", 0.1): sweep([0.5, 0.40, 0.3], [0.8, 0.6, 0.5]),
              ("forget01", 5.0): sweep([0.6, 0.59, 0.58], [0.7, 0.5, 0.2])}
    paths = write_sweeps(tmp_path, "geffect_table2", sweeps)
    table = write_table("geffect_table2", {}, paths, "tiny", tmp_path / "t.csv", tmp_path / "t.md",
                        uwc_settings={"measure": "mu", "max_drop": 0.1})
    got = [(r.split, r.value, r.alpha, r.es_exact_unlearn) for r in table.itertuples()]
    assert got == [("forget05", BEFORE_UNLEARNING, 0.0, 0.8), ("forget05", 0.1, 0.0, 0.8),
                   ("forget05", 5.0, 0.5, 0.4), ("forget01", BEFORE_UNLEARNING, 0.0, 0.7),
                   ("forget01", 5.0, 1.0, 0.2)]
    assert table["measure_drop"].iloc[2] == pytest.approx(0.06)
    assert set(table["setting"]) == {"alpha"}
    markdown = (tmp_path / "t.md").read_text()
    assert "UWC tuning for WGA" in markdown and "| forget05 | 5.00 | 0.50 |" in markdown
    assert pd.read_csv(tmp_path / "t.csv").shape == table.shape


def test_a_uwc_table_refuses_sweeps_of_another_table(tmp_path):
    paths = write_sweeps(tmp_path, "geffect_table3", {("forget05", 0.5): sweep([0.5, 0.4], [0.8, 0.1])})
    with pytest.raises(io.ArtifactError, match="expected a UWC sweep of geffect_table2"):
        write_table("geffect_table2", {}, paths, "tiny", tmp_path / "t.csv", tmp_path / "t.md", uwc_settings={})


@pytest.mark.parametrize("name", [n for n in TABLES.names() if TABLES[n].scenario == UWC])
def test_every_uwc_table_sweeps_a_setting_of_its_objective(name):
    from unloc.objectives import OBJECTIVES

    spec = TABLES[name]
    fields = OBJECTIVES[spec.objective].settings.__dataclass_fields__
    assert spec.sweep in fields and all(key in fields for key, _ in spec.fixed) and spec.grid
