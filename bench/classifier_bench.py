"""The classifier: batched throughput, single-item latency, load time and memory.

    .venv/bin/python bench/classifier_bench.py [--models-dir DIR] [--batch 10000]
                                               [--singles 500] [--json]

Without ``--models-dir`` a temporary folder is used. When the folder holds no current
model, one is trained first by ``classifiers.load_or_train`` in a child process (so its
memory does not count here); then this process loads it with ``load_or_train`` (timed) and
measures ``Model.predict`` on a batch of ``--batch`` texts (the shipped seed texts with
their contexts, repeated), ``Model.predict_proba`` on the same batch (features + logistic
regression only: no language guess, no explanation), ``Model.predict(explain=False)`` on the
same batch, the same on the 2,000 distinct seed texts with the per-word char n-gram cache
emptied first (cold: every word is cut into n-grams once), and ``Model.predict_one`` on
``--singles`` texts one at a time. The per-word cache is emptied before every timed run; the
batch repeats the seed 5 times, so after its first 2,000 texts the words are known (real
traffic repeats words, not whole texts: the cold figure is the pessimistic one). CPU seconds
are recorded beside wall seconds: on a shared machine the wall figures depend on the load.
Peak RSS is ``resource.getrusage`` ru_maxrss.

The batched ``predict(explain=False)`` run (the goal's figure) is repeated ``--repeat`` times
(default 5) and its best wall and best CPU figures are reported: on a machine shared with other
work the best run is the one least disturbed.

``--baseline DIR`` compares two trees in the same run: DIR holds another checkout's
``classifiers/`` package (e.g. ``git worktree add /tmp/base HEAD~1`` or ``git archive HEAD
classifiers | tar -x -C /tmp/base``); a child process per tree, alternately ``--rounds`` times
(default 3), measures the best of 3 ``predict(explain=False)`` runs on 10,000 seed texts with
the per-word caches emptied before each, each tree with a model its own code trained. The
ratio of the two is what to read when the load changes from one minute to the next.

Goals: >= 10,000 items/s batched, < 1 ms median for one item, < 300 MB peak RSS.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, emit, machine, peak_rss_mb, percentile

GOAL_ITEMS_S = 10_000
GOAL_SINGLE_MS = 1.0
GOAL_RSS_MB = 300


def train_in_child(directory: Path) -> float:
    code = (
        "import sys, time; from pathlib import Path; from classifiers import load_or_train; "
        "t = time.perf_counter(); load_or_train(Path(sys.argv[1])); "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(directory)], cwd=ROOT, check=True,
        capture_output=True, text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def run(models_dir: Path, batch: int, singles: int, repeat: int) -> dict[str, object]:
    train_s = None
    if not (models_dir / "current").is_file():  # the registry's pointer file
        train_s = train_in_child(models_dir)

    rss_start = peak_rss_mb()
    t0 = time.perf_counter()
    import classifiers

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = classifiers.load_or_train(models_dir)
    load_s = time.perf_counter() - t0
    rss_loaded = peak_rss_mb()

    seed = classifiers.load_seed()
    texts = [seed[i % len(seed)].text for i in range(batch)]
    contexts = [seed[i % len(seed)].context for i in range(batch)]
    model.predict(texts[:100], contexts[:100])  # warm-up
    model.predict_proba(texts[:100], contexts[:100])

    def timed(call: object) -> tuple[float, float]:
        model.clear_caches()
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        call()  # type: ignore[operator]
        return time.perf_counter() - wall, time.process_time() - cpu

    batch_s, batch_cpu = timed(lambda: model.predict(texts, contexts))
    rss_batch = peak_rss_mb()
    quick = [timed(lambda: model.predict(texts, contexts, explain=False)) for _ in range(repeat)]
    quick_s, quick_cpu = min(wall for wall, _ in quick), min(cpu for _, cpu in quick)
    quick_median_s = statistics.median(wall for wall, _ in quick)
    proba_s, _ = timed(lambda: model.predict_proba(texts, contexts))
    distinct = [ex.text for ex in seed]
    distinct_contexts = [ex.context for ex in seed]
    cold_s, cold_cpu = timed(lambda: model.predict(distinct, distinct_contexts, explain=False))
    cold_explain_s, _ = timed(lambda: model.predict(distinct, distinct_contexts))

    model.clear_caches()
    single_ms = []
    single_cpu = time.process_time()
    for i in range(singles):
        ex = seed[(i * 7) % len(seed)]
        t = time.perf_counter()
        model.predict_one(ex.text, ex.context)
        single_ms.append((time.perf_counter() - t) * 1000)
    single_cpu_ms = (time.process_time() - single_cpu) * 1000 / singles
    single_ms.sort()

    return {
        "bench": "classifier",
        "model_version": model.version,
        "train_s": None if train_s is None else round(train_s, 2),
        "import_s": round(import_s, 3),
        "load_s": round(load_s, 3),
        "batch": batch,
        "batch_s": round(batch_s, 3),
        "batched_items_per_s": round(batch / batch_s),
        "batched_items_per_cpu_s": round(batch / batch_cpu),
        "batched_no_explain_items_per_s": round(batch / quick_s),
        "batched_no_explain_items_per_cpu_s": round(batch / quick_cpu),
        "batched_no_explain_median_items_per_s": round(batch / quick_median_s),
        "batched_no_explain_runs": repeat,
        "proba_only_items_per_s": round(batch / proba_s),
        "cold_distinct_no_explain_items_per_s": round(len(distinct) / cold_s),
        "cold_distinct_no_explain_items_per_cpu_s": round(len(distinct) / cold_cpu),
        "cold_distinct_items_per_s": round(len(distinct) / cold_explain_s),
        "single_median_ms": round(statistics.median(single_ms), 3),
        "single_mean_cpu_ms": round(single_cpu_ms, 3),
        "single_p99_ms": round(percentile(single_ms, 99), 3),
        "rss_before_import_mb": round(rss_start, 1),
        "rss_after_load_mb": round(rss_loaded, 1),
        "peak_rss_mb": round(max(rss_batch, peak_rss_mb()), 1),
    }


CHILD = r"""
import gc, json, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import classifiers
model = classifiers.load_or_train(Path(sys.argv[2]))
seed = classifiers.load_seed()
n = 10_000
texts = [seed[i % len(seed)].text for i in range(n)]
contexts = [seed[i % len(seed)].context for i in range(n)]
model.predict(texts[:100], contexts[:100], explain=False)
best_wall = best_cpu = 0.0
for _ in range(3):
    model.clear_caches()
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    model.predict(texts, contexts, explain=False)
    best_wall = max(best_wall, n / (time.perf_counter() - wall))
    best_cpu = max(best_cpu, n / (time.process_time() - cpu))
print(json.dumps({"package": classifiers.__file__, "wall": best_wall, "cpu": best_cpu}))
"""


def compare(baseline: Path, rounds: int) -> dict[str, object]:
    """Best batched items/s of `baseline`'s classifiers package and of this tree's, measured in
    alternating child processes (each tree with its own temporary models folder)."""
    trees = {"baseline": baseline.resolve(), "this tree": ROOT}
    best: dict[str, dict[str, float]] = {name: {"wall": 0.0, "cpu": 0.0} for name in trees}
    with tempfile.TemporaryDirectory(prefix="relais-bench-compare-") as tmp:
        for _ in range(rounds):
            for name, tree in trees.items():
                models = Path(tmp) / name.replace(" ", "-")
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, str(tree), str(models)], cwd=tree, check=True,
                    capture_output=True, text=True,
                )
                found = json.loads(out.stdout.strip().splitlines()[-1])
                if not str(found["package"]).startswith(str(tree)):
                    raise SystemExit(f"{name}: imported {found['package']}, not from {tree}")
                for key in ("wall", "cpu"):
                    best[name][key] = max(best[name][key], found[key])
    return {
        "baseline": str(trees["baseline"]),
        "rounds": rounds,
        "baseline_items_per_s": round(best["baseline"]["wall"]),
        "baseline_items_per_cpu_s": round(best["baseline"]["cpu"]),
        "this_tree_items_per_s": round(best["this tree"]["wall"]),
        "this_tree_items_per_cpu_s": round(best["this tree"]["cpu"]),
        "speedup_wall": round(best["this tree"]["wall"] / best["baseline"]["wall"], 2),
        "speedup_cpu": round(best["this tree"]["cpu"] / best["baseline"]["cpu"], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models-dir", type=Path, help="models folder (default: a temporary one)")
    ap.add_argument("--batch", type=int, default=10_000, help="texts in the batch (10000)")
    ap.add_argument("--singles", type=int, default=500, help="predict_one calls (500)")
    ap.add_argument("--repeat", type=int, default=5, help="batched runs without explanations, best kept (5)")
    ap.add_argument("--baseline", type=Path, help="another tree holding classifiers/: compare the two")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds with --baseline (3)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    if args.baseline:
        found = compare(args.baseline, args.rounds)
        found.update(machine())
        emit(found, args.json, [
            f"batched predict(explain=False), best of {args.rounds} alternating rounds x 3 runs:",
            f"  baseline {found['baseline']}: {found['baseline_items_per_s']:,} items/s, "
            f"{found['baseline_items_per_cpu_s']:,} per CPU second",
            f"  this tree: {found['this_tree_items_per_s']:,} items/s, "
            f"{found['this_tree_items_per_cpu_s']:,} per CPU second",
            f"  speed-up {found['speedup_wall']}x wall, {found['speedup_cpu']}x CPU "
            f"(load average {found['loadavg_1m']})",
        ])
        return

    if args.models_dir:
        args.models_dir.mkdir(parents=True, exist_ok=True)
        result = run(args.models_dir, args.batch, args.singles, args.repeat)
    else:
        with tempfile.TemporaryDirectory(prefix="relais-bench-models-") as tmp:
            result = run(Path(tmp), args.batch, args.singles, args.repeat)
    result["meets_goal"] = {
        "batched": result["batched_no_explain_items_per_s"] >= GOAL_ITEMS_S,  # type: ignore[operator]
        "single": result["single_median_ms"] < GOAL_SINGLE_MS,  # type: ignore[operator]
        "rss": result["peak_rss_mb"] < GOAL_RSS_MB,  # type: ignore[operator]
    }
    result.update(machine())
    ok = {True: "met", False: "NOT met"}
    goals = result["meets_goal"]
    summary = [
        f"classifier {result['model_version']}"
        + (f" (trained in a child process in {result['train_s']} s)" if result["train_s"] else ""),
        (f"  batched predict(explain=False), best of {args.repeat}: "
        f"{result['batched_no_explain_items_per_s']:,} items/s "
        f"(median {result['batched_no_explain_median_items_per_s']:,}), "
        f"{result['batched_no_explain_items_per_cpu_s']:,} per CPU second "
        f"(goal >= {GOAL_ITEMS_S:,}: {ok[goals['batched']]})"),  # type: ignore[index]
        (f"  batched predict with explanations: {result['batched_items_per_s']:,} items/s "
        f"({result['batch']} texts in {result['batch_s']} s), "
        f"{result['batched_items_per_cpu_s']:,} per CPU second"),
        (f"    predict_proba alone: {result['proba_only_items_per_s']:,} items/s; cold cache, "
        f"2,000 distinct texts: {result['cold_distinct_no_explain_items_per_s']:,} items/s "
        f"without explanations, {result['cold_distinct_items_per_s']:,} with"),
        (f"  predict_one: median {result['single_median_ms']} ms, p99 {result['single_p99_ms']} ms, "
        f"mean CPU {result['single_mean_cpu_ms']} ms "
        f"(goal < {GOAL_SINGLE_MS} ms: {ok[goals['single']]})"),  # type: ignore[index]
        f"  load: import {result['import_s']} s, load_or_train {result['load_s']} s",
        (f"  peak RSS {result['peak_rss_mb']} MB (after load {result['rss_after_load_mb']} MB; "
        f"goal < {GOAL_RSS_MB} MB: {ok[goals['rss']]})"),  # type: ignore[index]
        f"  load average {result['loadavg_1m']}",
    ]
    emit(result, args.json, summary)


if __name__ == "__main__":
    main()
