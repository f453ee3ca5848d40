"""Table 2 and the figures from hand-made curves whose AUES and MU95 are known."""

import numpy as np
import pandas as pd
import pytest

from unloc.tables import TABLE2_COLUMNS, read_curves, table2, write_table2

PARAMS = {"n_resamples": 500, "seed": 0, "plus_one": False, "tost_margin": {"aues": 0.02, "mu95": 1.0}}
ALPHA = np.linspace(0, 1, 11)


def write_curve(root, objective, scenario, seed, rs_level, fq_shift=0.0):
    """FS from 0 to 1 with RS = rs_level constant (AUES = rs_level); MU falls linearly from 1 to
    0.5, so it reaches 95% of θo's MU at α = 0.1, where log10 FQ = -1 - fq_shift."""
    path = root / "mix" / objective / scenario / f"s{seed}" / "curve.csv"
    path.parent.mkdir(parents=True)
    frame = pd.DataFrame({"alpha": ALPHA, "fs": ALPHA, "rs": np.full_like(ALPHA, rs_level),
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
    table = table2(read_curves(curves), "tiny", PARAMS)
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


def test_table2_files(curves, tmp_path):
    write_table2(curves, "tiny", PARAMS, tmp_path / "t.csv", tmp_path / "t.md")
    md = (tmp_path / "t.md").read_text()
    assert "Table 2: Random vs Oracle (tiny)" in md
    assert "| NPO | AUES (↑) | 0.600 ± 0.010 | 0.800 ± 0.010 |" in md
    assert pd.read_csv(tmp_path / "t.csv").shape == (2, len(TABLE2_COLUMNS))


def test_figures_are_written_as_png_and_pdf(curves, tmp_path):
    from unloc.figures import plot_curves

    for kind in ("fs_rs", "mu_fq"):
        plot_curves(curves, kind, "tiny", tmp_path / f"{kind}.png", tmp_path / f"{kind}.pdf")
        assert (tmp_path / f"{kind}.png").read_bytes()[:4] == b"\x89PNG"
        assert (tmp_path / f"{kind}.pdf").read_bytes()[:4] == b"%PDF"
