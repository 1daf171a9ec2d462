"""Where a study's time goes: the sum of its jobs' `benchmark:` records, per rule, for one results folder or two
side by side (before and after a change, both run on the same day on the same machine).

    .venv/bin/python benchmarks/job_minutes.py results/demo [OTHER_CLONE/results/demo]

Every rule writes a benchmark record (wall seconds `s`, `cpu_time`, ...) under results/<study>/benchmarks/.
Job-minutes are the sum of their wall seconds / 60: what the jobs cost the machine, whatever ran beside them.
With two folders it prints the second / the first per rule and in total. A record's rule is read from its
path (train_epoch_5.tsv -> train_epoch; plots/heatmap_edges.tsv -> heatmap; selection/.../chunk_0.tsv ->
select_train).
"""

import argparse
import csv
import re
from collections import defaultdict
from pathlib import Path


def rule_of(relative):
    """The rule a benchmark record belongs to, from its path relative to the benchmarks folder."""
    parts = Path(relative).parts
    stem = re.sub(r"_\d+$", "", Path(relative).stem)
    if parts[0] == "selection" and len(parts) > 1:
        return {"chunk": "select_train", "gather": "select_gather"}.get(stem, f"selection/{stem}")
    if parts[0] == "orderings":
        return "seeded_ordering" if stem.endswith("_seed") else "ordering"
    if len(parts) > 1 and parts[-2] == "plots":
        return stem.split("_")[0]
    return stem


def job_minutes(results):
    """{rule: [jobs, wall seconds, cpu seconds]} of the records under results/benchmarks."""
    out = defaultdict(lambda: [0, 0.0, 0.0])
    root = Path(results) / "benchmarks"
    files = sorted(root.rglob("*.tsv"))
    if not files:
        raise SystemExit(f"no benchmark records under {root}: run the study first")
    for path in files:
        with open(path) as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        entry = out[rule_of(path.relative_to(root))]
        entry[0] += 1
        entry[1] += float(row["s"])
        entry[2] += float(row["cpu_time"]) if row.get("cpu_time") not in (None, "", "NA") else 0.0
    return dict(out)


def table(folders):
    runs = [job_minutes(f) for f in folders]
    rules = sorted(set().union(*runs), key=lambda r: -max(run.get(r, [0, 0, 0])[1] for run in runs))
    head = "| rule | " + " | ".join(f"jobs, job-min, CPU-min ({f})" for f in folders)
    lines = [head + (" | second / first |" if len(runs) == 2 else " |")]
    lines.append("|---" * (len(runs) + 1 + (len(runs) == 2)) + "|")

    def cells(entry):
        return f"{entry[0]}, {entry[1] / 60:.2f}, {entry[2] / 60:.2f}"

    for rule in rules + ["total"]:
        entries = [
            [sum(v[i] for v in run.values()) for i in range(3)] if rule == "total" else run.get(rule, [0, 0.0, 0.0])
            for run in runs
        ]
        line = f"| {rule} | " + " | ".join(cells(e) for e in entries)
        if len(runs) == 2:
            line += f" | {entries[1][1] / entries[0][1]:.2f} |" if entries[0][1] else " | |"
        else:
            line += " |"
        lines.append(line)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="one or two results/<study> folders")
    a = ap.parse_args()
    if len(a.results) > 2:
        ap.error("give one folder, or two to compare")
    print(table(a.results))


if __name__ == "__main__":
    main()
