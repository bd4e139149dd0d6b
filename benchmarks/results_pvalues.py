"""Recompute p-values from docs/RESULTS.md's printed paired intervals; Holm and BH over its claim rows.

    python benchmarks/results_pvalues.py docs/RESULTS.md
"""
import re, sys
from scipy import stats
from statsmodels.stats.multitest import multipletests
text = open(sys.argv[1]).read()
body = text.split("## Damage GAN vs ContraD", 1)[1].split("## Minority vs majority", 1)[0]
rows = []
for line in body.splitlines():
    if not line.startswith("| ") or line.startswith("| claim"):
        continue
    cells = [c.strip() for c in line.strip("|").split("|")]
    m = re.match(r"([+-][\d.e+-]+) \[([+-][\d.e+-]+), ([+-][\d.e+-]+)\] \(n=(\d+)\)", cells[5])
    if not m:
        rows.append((cells, None)); continue
    est, lo, hi, n = float(m[1]), float(m[2]), float(m[3]), int(m[4])
    se = (hi - lo) / (2 * stats.t.ppf(0.975, n - 1))
    p = 2 * stats.t.sf(abs(est) / se, n - 1) if se > 0 else float("nan")
    rows.append((cells, p))
ps = [p for _, p in rows if p is not None]
holm = multipletests(ps, 0.05, "holm")[0]; bh = multipletests(ps, 0.05, "fdr_bh")[0]
i = 0
resolved = 0; kept_h = kept_b = 0
for cells, p in rows:
    if p is None:
        continue
    verdict = cells[6]
    if "holds" in verdict or "opposite" in verdict or verdict == "**resolved**":
        resolved += 1; kept_h += holm[i]; kept_b += bh[i]
        print(f"{p:.4f} holm={'yes' if holm[i] else 'no '} bh={'yes' if bh[i] else 'no '} | {cells[0][:60]} | {cells[1]} | {cells[2]} | {verdict}")
    i += 1
print(f"claim intervals: {len(ps)}; resolved unadjusted: {resolved}; survive Holm: {kept_h}; survive BH: {kept_b}")
