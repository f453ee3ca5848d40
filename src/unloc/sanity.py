"""The check every injected experiment rests on: did θo learn the forget set, and keep the retain set?

Section 4 of seeds/000 compares unlearning inside the region the forget set was injected into
(Oracle) with a random region. That comparison means something only if θo memorized the forget
set, which θr did not know, without losing what θr knew. Per mask seed, θo passes when

* its forget ES exceeds θr's by at least ``forget_margin``, and
* its retain ES is at most ``retain_drop`` below θr's.

``sanity.csv`` has a ``pass`` column (yes / no for each θo, empty for θp and θr); every table and
figure built on injected curves carries the verdict (tables.py, figures.py), so a table computed
from a θo that did not memorize cannot read as a result.
"""

from __future__ import annotations

from dataclasses import dataclass

from unloc import io
from unloc.registry import setting

COLUMNS = ["checkpoint", "es_forget", "es_retain", "pass"]


@dataclass(frozen=True)
class SanitySettings:
    """The config's ``sanity`` section."""

    forget_margin: float = setting(0.2, "θo's forget ES must exceed θr's by this much (it memorized the forget set)",
                                   minimum=0)
    retain_drop: float = setting(0.05, "θo's retain ES may be at most this much below θr's", minimum=0)


def is_theta_o(name: str) -> bool:
    return name.startswith("theta_o[")


def check_rows(results: dict[str, dict], settings: SanitySettings) -> list[dict]:
    """One row per named ES result (theta_p, theta_r, theta_o[s<seed>] ...) with its verdict, and
    the mean over the θo rows, ``theta_o``, which passes when every seed does."""
    reference = results.get("theta_r")
    rows = []
    for name, es in results.items():
        row = {"checkpoint": name, "es_forget": es["es_forget"], "es_retain": es["es_retain"], "pass": ""}
        if is_theta_o(name) and reference is not None:
            passed = (es["es_forget"] - reference["es_forget"] >= settings.forget_margin
                      and reference["es_retain"] - es["es_retain"] <= settings.retain_drop)
            row["pass"] = "yes" if passed else "no"
        rows.append(row)
    seeds = [r for r in rows if is_theta_o(r["checkpoint"])]
    if seeds:
        mean = {"checkpoint": "theta_o",
                "es_forget": sum(r["es_forget"] for r in seeds) / len(seeds),
                "es_retain": sum(r["es_retain"] for r in seeds) / len(seeds),
                "pass": "" if reference is None else ("yes" if all(r["pass"] == "yes" for r in seeds) else "no")}
        rows.insert(rows.index(seeds[0]), mean)
    return rows


def write(path, rows: list[dict]) -> None:
    io.write_csv(path, [{**r, "es_forget": f"{r['es_forget']:.4f}", "es_retain": f"{r['es_retain']:.4f}"}
                        for r in rows], COLUMNS)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    failed: tuple[str, ...] = ()  # the θo rows that did not pass, with their numbers
    source: str = ""

    def line(self) -> str:
        """The sentence tables print under their title."""
        if self.passed:
            return f"Sanity check passed: every θo memorized the forget set and kept the retain set ({self.source})."
        return (f"**WARNING: the sanity check failed** ({self.source}): {'; '.join(self.failed)}. θo did not "
                "memorize the forget set through its oracle region (or lost the retain set), so this comparison "
                "of localizations says nothing about localized knowledge.")


def read_verdict(path) -> Verdict:
    rows = io.read_csv(path)
    if not rows or "pass" not in rows[0]:
        raise io.ArtifactError(f"{path}: not a sanity.csv (no pass column)")
    reference = next((r for r in rows if r["checkpoint"] == "theta_r"), {"es_forget": "?", "es_retain": "?"})
    failed = tuple(f"{r['checkpoint']} forget ES {r['es_forget']} and retain ES {r['es_retain']} against θr's "
                   f"{reference['es_forget']} and {reference['es_retain']}"
                   for r in rows if is_theta_o(r["checkpoint"]) and r["pass"] != "yes")
    return Verdict(passed=not failed, failed=failed, source=str(path))
