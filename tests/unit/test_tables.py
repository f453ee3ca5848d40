"""Table 2 and the figures from hand-made curves whose AUES and MU95 are known."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unloc.figures import FIGURES, plot_figure
from unloc.io import ArtifactError
from unloc.registry import parse_settings
from unloc.stats import StatsSettings
from unloc.tables import TABLE2_COLUMNS, TABLES, read_curves, table2, write_table

STATS = {"n_resamples": 500}
SETTINGS = parse_settings(StatsSettings, STATS, "stats")
REPORT = Path(__file__).resolve().parents[2] / "workflow" / "report"
ALPHA = np.linspace(0, 1, 11)


def write_curve(root, objective, localizer, seed, rs_level, fq_shift=0.0):
    """FS from 0 to 1 with RS = rs_level constant (AUES = rs_level); MU falls linearly from 1 to
    0.5, so it reaches 95% of θo's MU at α = 0.1, where log10 FQ = -1 - fq_shift. The labels are
    columns of the curve; the path says nothing (its parts are shuffled on purpose)."""
    path = root / f"s{seed}-{localizer}-{objective}.csv"
    frame = pd.DataFrame({"scenario": "injected", "objective": objective, "localizer": localizer, "seed": seed,
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


@pytest.mark.parametrize("name", FIGURES.names())
def test_every_figure_is_written_as_png_and_pdf(curves, tmp_path, name, sanity_csv):
    plot_figure(name, curves, "tiny", tmp_path / f"{name}.png", tmp_path / f"{name}.pdf", sanity_csv)
    assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / f"{name}.pdf").read_bytes()[:4] == b"%PDF"


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
