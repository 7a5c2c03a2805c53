"""One table from the JSON lines of bench_gpu (physflow) and torch_gpu.py (torch): per case,
the time per step on each side and device, and the ratio physflow / torch on the GPU."""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
cases = []
for r in rows:
    if r["name"] not in cases:
        cases.append(r["name"])
cols = []
for r in rows:
    key = (r["side"], r["device"])
    if key not in cols:
        cols.append(key)
print("| case | " + " | ".join(f"{s} {d} (ms)" for s, d in cols) + " | physflow GPU / torch GPU | physflow CPU fused / torch CPU | physflow CPU burn / torch CPU |")
print("|---|" + "---:|" * (len(cols) + 3))
for c in cases:
    vals = {}
    for r in rows:
        if r["name"] == c and "ms" in r:
            vals[(r["side"], r["device"])] = r["ms"]
    cells = [f"{vals[k]:.3f}" if k in vals else "-" for k in cols]
    gpu_pf = [v for (s, d), v in vals.items() if s == "physflow" and d not in ("cpu", "cpu-burn")]
    gpu_t = [v for (s, d), v in vals.items() if s == "torch" and d != "cpu"]
    ratio = f"{gpu_pf[0] / gpu_t[0]:.2f}" if gpu_pf and gpu_t else "-"
    tc = vals.get(("torch", "cpu"))
    fused = f"{vals[('physflow', 'cpu')] / tc:.2f}" if tc and ("physflow", "cpu") in vals else "-"
    burn = f"{vals[('physflow', 'cpu-burn')] / tc:.2f}" if tc and ("physflow", "cpu-burn") in vals else "-"
    print(f"| {c} | " + " | ".join(cells) + f" | {ratio} | {fused} | {burn} |")
