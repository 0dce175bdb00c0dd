"""Does a per-layer search beat a method's uniform allocations? Read from a study's trials.csv (every
trial's paired latency ratio to dense with its 95% interval, and its KL with its interval, all
measured the same way during the search), printed and written as front_vs_uniform.json.

For each uniform seed U (uniform-30%, -50%, -70%):
- at equal latency: among the searched (non-seed) profiles measured at least as fast as U (latency
  ratio at or below U's), the one with the lowest KL: its KL against U's, the ratio, and whether it
  is lower beyond the intervals (its upper bound under U's lower bound);
- at equal KL: among the searched profiles with a KL at or below U's, the fastest: its latency ratio
  against U's, and whether it is faster beyond the intervals.

    python studies/methods/front_vs_uniform.py studies/results/smollm2-wisparse [more study folders]

With `--against OTHER` every sparse profile of each study (seeds included) is compared with OTHER's uniform
seeds instead (one method against another's uniform allocations, both as sparse/dense ratios
measured within their own study), written as front_vs_OTHER_uniform.json:

    python studies/methods/front_vs_uniform.py studies/results/smollm2-rsparse --against studies/results/smollm2-wisparse
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

UNIFORM = ("uniform-30%", "uniform-50%", "uniform-70%")


def _kl(r: pd.Series) -> list[float]:
    """KL with its interval (the proxy score is -KL, so its bounds swap)."""
    return [float(r["proxy_kl"]), -float(r["proxy_ci_high"]), -float(r["proxy_ci_low"])]


def _lat(r: pd.Series) -> list[float]:
    return [float(r["latency_ratio"]), float(r["latency_ratio_ci_low"]), float(r["latency_ratio_ci_high"])]


def load(study: Path) -> pd.DataFrame:
    """The study's COMPLETE trials, with `seed` "" for the searched ones."""
    df = pd.read_csv(study / "trials.csv")
    df = df[df["state"] == "COMPLETE"].copy()
    df["seed"] = df["seed"].fillna("") if "seed" in df else ""
    return df


def compare(study: Path, against: Path | None = None) -> dict:
    """`study`'s searched profiles against its own uniform seeds, or (with `against`) all of
    `study`'s sparse profiles, seeds included, against another study's uniform seeds (another method)."""
    df = load(study)
    ref = df if against is None else load(against)
    searched = df[df["seed"] == ""] if against is None else df[df["seed"] != "dense"]
    out = {"study": study.name, "against": None if against is None else against.name, "trials": int(len(df)),
           "searched": int(len(searched)), "rows": []}
    for name in UNIFORM:
        u = ref[ref["seed"] == name]
        if u.empty:
            continue
        u = u.iloc[0]
        ukl, ulat = _kl(u), _lat(u)
        row = {"uniform": name, "uniform_kl": ukl, "uniform_ratio": ulat}
        fast = searched[searched["latency_ratio"] <= ulat[0]]
        if len(fast):
            b = fast.loc[fast["proxy_kl"].idxmin()]
            bkl, blat = _kl(b), _lat(b)
            row["equal_latency"] = {"trial": int(b["trial"]), "kl": bkl, "ratio": blat, "kl_ratio": bkl[0] / ukl[0],
                                    "lower_beyond_intervals": bkl[2] < ukl[1]}
        good = searched[searched["proxy_kl"] <= ukl[0]]
        if len(good):
            b = good.loc[good["latency_ratio"].idxmin()]
            bkl, blat = _kl(b), _lat(b)
            row["equal_kl"] = {"trial": int(b["trial"]), "kl": bkl, "ratio": blat, "ratio_vs_uniform": blat[0] / ulat[0],
                               "faster_beyond_intervals": blat[2] < ulat[1]}
        out["rows"].append(row)
    return out


def _fmt(t: list[float]) -> str:
    return f"{t[0]:.3g} [{t[1]:.3g}, {t[2]:.3g}]"


def main(paths: list[str]) -> None:
    against = None
    if "--against" in paths:
        i = paths.index("--against")
        against, paths = Path(paths[i + 1]), paths[:i] + paths[i + 2:]
    for p in paths:
        res = compare(Path(p), against)
        name = "front_vs_uniform.json" if against is None else f"front_vs_{against.name}_uniform.json"
        (Path(p) / name).write_text(json.dumps(res, indent=2) + "\n")
        whose = "" if against is None else f" against {against.name}'s uniform seeds"
        print(f"\n{res['study']}{whose}: {res['trials']} trials, {res['searched']} compared (latency as sparse/dense ratio)")
        for r in res["rows"]:
            print(f"  {r['uniform']}: KL {_fmt(r['uniform_kl'])}, ratio {_fmt(r['uniform_ratio'])}")
            e = r.get("equal_latency")
            if e:
                print(f"    as fast: trial {e['trial']}: KL {_fmt(e['kl'])} = {e['kl_ratio']:.2f}x, ratio {_fmt(e['ratio'])};"
                      f" lower beyond the intervals: {'yes' if e['lower_beyond_intervals'] else 'no'}")
            e = r.get("equal_kl")
            if e:
                print(f"    as accurate: trial {e['trial']}: ratio {_fmt(e['ratio'])} = {e['ratio_vs_uniform']:.2f}x,"
                      f" KL {_fmt(e['kl'])}; faster beyond the intervals: {'yes' if e['faster_beyond_intervals'] else 'no'}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["studies/results/smollm2-wisparse"])
