"""seeds/004's methods and tables: which gradients an edit reads and with which seed, and the WME
tables built from evaluation files whose means and spreads are known by construction."""

import json
import math

import pandas as pd
import pytest
import torch

from unloc import io
from unloc.figures import FIGURES, plot_figure
from unloc.tables import TABLES, WME, write_table
from unloc.weightings import WEIGHTINGS, PruningSettings, WeightedSettings
from unloc.wme import (
    BASELINE_LABELS,
    EDITS,
    FOPRT_SERIES,
    REFERENCES,
    WME_METRICS,
    read_wme_evals,
    summarise,
)


def test_an_edit_reads_the_gradients_of_its_weighting_point_and_share():
    assert EDITS["tv"].gradients_key(0) is None and EDITS["pruning"].gradients_key(0) is None
    # the whole data do not depend on the run: every run reads one file
    assert EDITS["wme_grad"].gradients_key(0) == EDITS["wme_fisher"].gradients_key(2) == "theta_0-mean_gradient"
    assert EDITS["wme_grad_full"].gradients_key(1) == "theta_full-mean_gradient"
    # a share of the samples is drawn with the run's seed
    assert EDITS["wme_grad_f0.2"].gradients_key(1) == "theta_0-mean_gradient-f0.2-s1"
    assert EDITS["tau0.25"].weighting_for(3) == {"name": "tau", "tau": 0.25}
    assert EDITS["random"].weighting_for(3) == {"name": "random", "seed": 3}


def test_fig6_grids_pass_through_table7s_points_and_end_at_the_edits_they_equal():
    weighted, pruning = FOPRT_SERIES["Weighted, ω"], FOPRT_SERIES["Pruning, λ/100"]
    assert (0.5, "weighted") in weighted and (0.005, "pruning") in pruning
    for x, method in weighted[1:-1]:
        assert EDITS[method].block == {"name": "weighted", "omega": x}
    for x, method in pruning[1:-1]:
        assert EDITS[method].block == {"name": "pruning", "percent": pytest.approx(100 * x)}
    # the ends are θfull (W = 0) and TV (W = 1), which the weightings give at those values
    tv = {"a": torch.tensor([0.5, -1.0, 2.0])}
    weigh = {"weighted": lambda x: WEIGHTINGS["weighted"].fn(WeightedSettings(omega=x), tv, None, None),
             "pruning": lambda x: WEIGHTINGS["pruning"].fn(PruningSettings(percent=100 * x), tv, None, None)}
    for name, points in (("weighted", weighted), ("pruning", pruning)):
        for x, method in (points[0], points[-1]):
            expected = 0.0 if method == "full" else 1.0
            assert method in ("full", "tv") and torch.equal(weigh[name](x)["a"], torch.full((3,), expected))


@pytest.mark.parametrize("name", [n for n in TABLES.names() if TABLES[n].scenario == WME])
def test_every_wme_row_is_a_reference_an_edit_or_a_paper_baseline(name):
    rows = TABLES[name].rows
    assert rows[:2] == ("full", "gt")
    assert all(r in REFERENCES or r in EDITS or r in BASELINE_LABELS for r in rows)


def write_eval(path, fq, mu, es_forget, es_retain, rouge=0.5):
    values = {"forget_quality": fq, "model_utility": mu, "extraction_strength": es_forget,
              "retain_extraction_strength": es_retain}
    results = {m: {"agg_value": values.get(m, rouge)} for m in WME_METRICS}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results))
    return str(path)


def evals(root, split, method, runs):
    """TOFU_EVAL.json files of one method: ``runs`` {seed or None: (fq, mu, es_forget, es_retain)}."""
    base = root / "wme" / split / "eval" / method
    return [write_eval(base / ("" if seed is None else f"s{seed}") / "TOFU_EVAL.json", *values)
            for seed, values in runs.items()]


def test_runs_give_the_mean_and_population_std_and_references_count_once(tmp_path):
    paths = [*evals(tmp_path, "forget05", "full", {None: (1e-3, 0.6, 0.9, 0.9)}),
             *evals(tmp_path, "forget05", "tv", {0: (1e-1, 0.4, 0.1, 0.3), 1: (1e-3, 0.5, 0.2, 0.5)})]
    rows = summarise(read_wme_evals(paths), ("full", "tv"))
    full, tv = rows
    assert (full["method"], full["runs"], full["fq_log10_mean"], full["mu_std"]) == ("Full", 1, pytest.approx(-3), 0)
    assert tv["method"] == "TV" and tv["runs"] == 2
    assert tv["fq_log10_mean"] == pytest.approx(-2) and tv["fq_log10_std"] == pytest.approx(1)  # log10: -1, -3
    assert tv["mu_mean"] == pytest.approx(0.45) and tv["mu_std"] == pytest.approx(0.05)  # ddof 0
    assert tv["es_gap_mean"] == pytest.approx(0.25)  # ES(D_r) - ES(D_f): 0.2 and 0.3


def test_the_average_table_averages_each_run_over_the_splits(tmp_path):
    paths = [*evals(tmp_path, "forget01", "tv", {0: (1.0, 0.2, 0, 0), 1: (1.0, 0.4, 0, 0)}),
             *evals(tmp_path, "forget10", "tv", {0: (1.0, 0.6, 0, 0), 1: (1.0, 1.0, 0, 0)})]
    (row,) = summarise(read_wme_evals(paths), ("tv",), ("forget01", "forget10"), average=True)
    # run 0: (0.2 + 0.6) / 2 = 0.4; run 1: (0.4 + 1.0) / 2 = 0.7
    assert row["split"] == "average" and row["mu_mean"] == pytest.approx(0.55) and row["mu_std"] == pytest.approx(0.15)
    with pytest.raises(io.ArtifactError, match="no evaluation of tv on forget05"):
        summarise(read_wme_evals(paths), ("tv",), ("forget01", "forget05"), average=True)


def test_an_evaluation_without_a_reference_or_a_metric_is_refused(tmp_path):
    (path,) = evals(tmp_path, "forget01", "gt", {None: (None, 0.5, 0.1, 0.9)})
    with pytest.raises(io.ArtifactError, match="forget_quality is null"):
        read_wme_evals([path])
    bad = tmp_path / "wme" / "forget01" / "eval" / "tv" / "s0" / "TOFU_EVAL.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"forget_quality": {"agg_value": 0.5}}))
    with pytest.raises(io.ArtifactError, match="no forget_truth_ratio, model_utility"):
        read_wme_evals([str(bad)])
    with pytest.raises(io.ArtifactError, match="expected a WME evaluation"):
        read_wme_evals([str(tmp_path / "TOFU_EVAL.json")])


def test_a_split_table_reports_its_rows_of_its_split_in_order(tmp_path):
    rows = TABLES["wme_table8"].rows
    paths = []
    for i, method in enumerate(rows):
        runs = {None: (0.5, 0.5, 0.5, 0.5)} if method in REFERENCES else \
            {s: (10.0 ** -(i + s), 0.1 * i, 0.2, 0.6) for s in (0, 1)}
        paths += evals(tmp_path, "forget05", method, runs)
    csv, md = tmp_path / "t.csv", tmp_path / "t.md"
    write_table("wme_table8", {}, paths, "tiny", csv, md)
    table = pd.read_csv(csv)
    assert list(table["method"]) == ["Full", "GT", "τ = 0", "τ = 0.25", "τ = 0.5", "WME-grad", "WME-fisher", "τ = 4",
                                     "τ = 8"]
    assert (table["split"] == "forget05").all() and list(table["runs"]) == [1, 1] + [2] * 7
    assert table["fq_log10_mean"].iloc[2] == pytest.approx(-2.5) and table["fq_log10_std"].iloc[2] == pytest.approx(0.5)
    assert table["mu_mean"].iloc[8] == pytest.approx(0.8) and math.isclose(table["mu_std"].iloc[8], 0, abs_tol=1e-12)
    text = md.read_text()
    assert "| forget05 | τ = 0 | -2.500 ± 0.500 |" in text and "| forget05 | Full | -0.301 |" in text
    assert "Gib is not reported" in text


def test_a_baseline_the_config_does_not_run_is_left_out_and_named(tmp_path):
    paths = []
    for method in ("full", "gt", "npo_plus", "tv", "wme_grad", "wme_fisher"):  # no GA, GD, NPO runs
        paths += evals(tmp_path, "forget01", method, {None: (0.5, 0.5, 0.5, 0.5)} if method in REFERENCES
                       else {0: (0.1, 0.4, 0.2, 0.6)})
    csv, md = tmp_path / "t.csv", tmp_path / "t.md"
    write_table("wme_table2", {}, paths, "tiny", csv, md)
    assert list(pd.read_csv(csv)["method"]) == ["Full", "GT", "NPO+", "TV", "WME-grad", "WME-fisher"]
    assert "Not run (wme.baselines has none): GA, GD, NPO." in md.read_text()
    with pytest.raises(io.ArtifactError, match="no evaluation of wme_grad on forget01"):  # an edit is never optional
        write_table("wme_table2", {}, [p for p in paths if "/wme_grad/" not in p], "tiny", csv, md)


@pytest.mark.parametrize("name", [spec.name for spec in FIGURES.specs() if spec.runs == WME])
def test_every_wme_figure_is_drawn_from_evaluations_and_refuses_a_curve(tmp_path, name):
    paths = []
    for split in ("forget05", "forget10"):
        for i, method in enumerate(FIGURES[name].rows):
            runs = {None: (0.5, 0.5, 0.9, 0.9)} if method in REFERENCES else \
                {s: (10.0 ** -(i + s), 0.05 * i, 0.3, 0.6 + 0.01 * s) for s in (0, 1)}
            paths += evals(tmp_path / split, split, method, runs)
    plot_figure(name, paths, "tiny", tmp_path / f"{name}.png", tmp_path / f"{name}.pdf")
    assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    curve = tmp_path / "curve.csv"
    curve.write_text("alpha,fs\n0,1\n")
    with pytest.raises(io.ArtifactError, match="expected a WME evaluation"):
        plot_figure(name, [str(curve)], "tiny", tmp_path / "x.png", tmp_path / "x.pdf")
