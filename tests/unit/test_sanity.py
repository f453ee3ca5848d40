"""The memorization check (sanity.py) and the verdict tables and figures carry."""

import pandas as pd
import pytest

from unloc import stages
from unloc.sanity import SanitySettings, check_rows, read_verdict, write
from unloc.tables import write_table

THETA_R = {"es_forget": 0.10, "es_retain": 0.90}


def rows_for(**theta_o) -> list[dict]:
    results = {"theta_p": {"es_forget": 0.0, "es_retain": 0.1}, "theta_r": THETA_R,
               **{f"theta_o[s{seed}]": es for seed, es in theta_o.items()}}
    return check_rows(results, SanitySettings(forget_margin=0.2, retain_drop=0.05))


def verdicts(rows) -> dict[str, str]:
    return {r["checkpoint"]: r["pass"] for r in rows}


def test_theta_o_passes_when_it_memorized_and_kept_the_retain_set():
    rows = rows_for(**{"7": {"es_forget": 0.31, "es_retain": 0.86}})
    assert verdicts(rows) == {"theta_p": "", "theta_r": "", "theta_o": "yes", "theta_o[s7]": "yes"}


@pytest.mark.parametrize("es,why", [
    ({"es_forget": 0.29, "es_retain": 0.90}, "forget ES only 0.19 above θr's"),
    ({"es_forget": 0.90, "es_retain": 0.84}, "retain ES 0.06 below θr's"),
])
def test_theta_o_fails_on_either_criterion_and_the_mean_row_with_it(es, why):
    rows = rows_for(**{"7": {"es_forget": 0.9, "es_retain": 0.9}, "19": es})
    assert verdicts(rows)["theta_o[s7]"] == "yes"
    assert verdicts(rows)["theta_o[s19]"] == "no", why
    assert verdicts(rows)["theta_o"] == "no"
    assert [r["checkpoint"] for r in rows] == ["theta_p", "theta_r", "theta_o", "theta_o[s7]", "theta_o[s19]"]
    mean = next(r for r in rows if r["checkpoint"] == "theta_o")
    assert mean["es_forget"] == pytest.approx((0.9 + es["es_forget"]) / 2)


def test_the_sanity_stage_writes_a_pass_column_and_logs_a_failure(tmp_path, caplog):
    import json

    for name, es in (("p", {"es_forget": 0.0, "es_retain": 0.1}), ("r", THETA_R),
                     ("o7", {"es_forget": 0.12, "es_retain": 0.9})):
        (tmp_path / f"{name}.json").write_text(json.dumps(es))
    stages.sanity({"sanity": {"forget_margin": 0.2}}, [f"theta_p={tmp_path / 'p.json'}",
                                                        f"theta_r={tmp_path / 'r.json'}",
                                                        f"theta_o[s7]={tmp_path / 'o7.json'}"], tmp_path / "s.csv")
    frame = pd.read_csv(tmp_path / "s.csv", keep_default_na=False)
    assert list(frame.columns) == ["checkpoint", "es_forget", "es_retain", "pass"]
    assert list(frame["pass"]) == ["", "", "no", "no"]
    assert "sanity check failed for theta_o[s7]: forget ES 0.1200" in caplog.text


@pytest.fixture
def injected_curves(tmp_path):
    import numpy as np

    paths = []
    alpha = np.linspace(0, 1, 5)
    for seed in (7, 19):
        for localizer, rs in (("oracle", 0.8), ("random", 0.6)):
            path = tmp_path / f"{localizer}{seed}.csv"
            pd.DataFrame({"scenario": "injected", "objective": "npo", "localizer": localizer, "seed": seed,
                          "alpha": alpha, "fs": alpha, "rs": rs, "mu": 1 - 0.5 * alpha, "log10_fq": -alpha}).to_csv(
                path, index=False)
            paths.append(str(path))
    return paths


@pytest.mark.parametrize("forget,verdict", [(0.9, "pass"), (0.12, "fail")])
def test_a_table_of_injected_curves_carries_the_verdict(tmp_path, injected_curves, forget, verdict):
    write(tmp_path / "sanity.csv", rows_for(**{"7": {"es_forget": forget, "es_retain": 0.9}}))
    table = write_table("table2", {"n_resamples": 200}, injected_curves, "tiny", tmp_path / "t.csv", tmp_path / "t.md",
                        tmp_path / "sanity.csv")
    assert set(pd.read_csv(tmp_path / "t.csv")["sanity"]) == {verdict} and set(table["sanity"]) == {verdict}
    second_line = (tmp_path / "t.md").read_text().splitlines()[2]
    if verdict == "pass":
        assert second_line.startswith("Sanity check passed")
    else:
        assert second_line.startswith("**WARNING: the sanity check failed**")
        assert "theta_o[s7] forget ES 0.1200" in second_line and read_verdict(tmp_path / "sanity.csv").failed


def test_a_table_of_injected_curves_without_its_sanity_check_is_refused(tmp_path, injected_curves):
    from unloc.io import ArtifactError

    with pytest.raises(ArtifactError, match="need its sanity.csv"):
        write_table("table2", {"n_resamples": 200}, injected_curves, "tiny", tmp_path / "t.csv", tmp_path / "t.md")
