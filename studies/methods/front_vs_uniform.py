"""Does a method's searched front beat its uniform allocations? Read from a study's verified.csv
(the front, the seeds and dense measured again, interleaved, in one run) and printed as a table;
written as front_vs_uniform.json beside the study.

For each uniform seed U (uniform-30%, -50%, -70%):
- at equal latency: the front profile with the lowest KL among those whose latency interval reaches
  at or below U's upper bound (as fast or faster), its KL against U's with both intervals, the KL
  ratio, and whether it is lower beyond the intervals (its upper bound below U's lower bound);
- at equal KL: the fastest front profile whose KL interval reaches at or below U's upper bound,
  its latency against U's, and whether it is faster beyond the intervals.

    python studies/methods/front_vs_uniform.py studies/results/smollm2-wisparse [more study folders]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

UNIFORM = ("uniform-30%", "uniform-50%", "uniform-70%")


def _kl(row: pd.Series) -> tuple[float, float, float]:
    """KL and its interval from a proxy row (accuracy = -KL; low/high are of -KL)."""
    return -float(row["accuracy"]), -float(row["accuracy_high"]), -float(row["accuracy_low"])


def _lat(row: pd.Series) -> tuple[float, float, float]:
    return float(row["latency_ms"]), float(row["latency_ci_low_ms"]), float(row["latency_ci_high_ms"])


def compare(study: Path) -> dict:
    df = pd.read_csv(study / "verified.csv")
    front = df[(df["kind"] != "dense") & df["on_front"].astype(bool) & ~df["name"].isin(UNIFORM)]
    dense = df[df["kind"] == "dense"].iloc[0]
    out = {"study": study.name, "dense_ms": _lat(dense), "front_size": int(len(front)), "rows": []}
    for name in UNIFORM:
        u = df[df["name"] == name]
        if u.empty:
            continue
        u = u.iloc[0]
        ukl, ulat = _kl(u), _lat(u)
        row = {"uniform": name, "uniform_kl": ukl, "uniform_ms": ulat, "uniform_on_front": bool(u["on_front"])}
        fast = front[front["latency_ci_low_ms"] <= ulat[2]]
        if len(fast):
            best = fast.loc[fast["accuracy"].idxmax()]  # lowest KL
            bkl, blat = _kl(best), _lat(best)
            row["equal_latency"] = {"profile": best["name"], "kl": bkl, "ms": blat, "kl_ratio": bkl[0] / ukl[0],
                                    "lower_beyond_intervals": bkl[2] < ukl[1]}
        good = front[front.apply(lambda r: _kl(r)[1] <= ukl[2], axis=1)]
        if len(good):
            best = good.loc[good["latency_ms"].idxmin()]
            bkl, blat = _kl(best), _lat(best)
            row["equal_kl"] = {"profile": best["name"], "kl": bkl, "ms": blat, "ms_ratio": blat[0] / ulat[0],
                               "faster_beyond_intervals": blat[2] < ulat[1]}
        out["rows"].append(row)
    return out


def _fmt(t: tuple[float, float, float], unit: str = "") -> str:
    return f"{t[0]:.4g}{unit} [{t[1]:.4g}, {t[2]:.4g}]"


def main(paths: list[str]) -> None:
    for p in paths:
        res = compare(Path(p))
        (Path(p) / "front_vs_uniform.json").write_text(json.dumps(res, indent=2) + "\n")
        print(f"\n{res['study']}: dense {_fmt(res['dense_ms'], ' ms')}, {res['front_size']} searched profiles on the verified front")
        for r in res["rows"]:
            print(f"  {r['uniform']}: KL {_fmt(r['uniform_kl'])}, {_fmt(r['uniform_ms'], ' ms')}"
                  f"{' (on the front)' if r['uniform_on_front'] else ''}")
            e = r.get("equal_latency")
            if e:
                print(f"    as fast: {e['profile']}: KL {_fmt(e['kl'])} = {e['kl_ratio']:.2f}x, {_fmt(e['ms'], ' ms')}; "
                      f"lower beyond the intervals: {'yes' if e['lower_beyond_intervals'] else 'no'}")
            e = r.get("equal_kl")
            if e:
                print(f"    as accurate: {e['profile']}: {_fmt(e['ms'], ' ms')} = {e['ms_ratio']:.2f}x, KL {_fmt(e['kl'])}; "
                      f"faster beyond the intervals: {'yes' if e['faster_beyond_intervals'] else 'no'}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["studies/results/smollm2-wisparse"])
