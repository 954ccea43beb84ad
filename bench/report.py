"""
Turn bench/results.json into bench/RESULTS.md and bench/throughput.png.

    .venv/bin/python bench/report.py
"""

import json
import platform
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def main() -> None:
    results = json.loads((HERE / "results.json").read_text())
    throughput = results["throughput"]
    generator = {
        "wrk": "wrk with one thread",
        "python": "bench/loadgen.py (the Python fallback; its figures are not comparable with wrk's)",
    }[results.get("load_generator", "wrk")]
    lines = [
        "# Benchmark results",
        "",
        f"One run of `bench/run.py` on this machine, each series the best of {results.get('rounds', 1)} "
        "turns taken in rotation with the others: "
        f"{platform.processor() or platform.machine()}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, "
        f"Python {platform.python_version()}. Loopback only; {generator} and the server "
        "share the two cores. osscallback runs as shipped (access log on, text logs), with a "
        "real-bucket configuration, `--no-confirm` (there is no OSS to ask here) and "
        "`--rate-limit 0` (one client makes all requests); callbacks are distinct, valid and "
        "signed, each recorded durably in the default SQLite ledger.",
        "",
        "Reproduce: `apt-get install wrk`, `python3 dev.py test` once (it makes `.venv`), then "
        "`.venv/bin/pip install matplotlib && .venv/bin/python bench/run.py`.",
        "",
        "## Throughput and latency",
        "",
        "Server CPU is the user and system time of the server's processes over the run "
        "divided by the requests answered (all threads; for osscallback, the ledger's too).",
        "",
        "| series | connections | requests/s | server CPU µs/request | p50 ms | p90 ms | p99 ms | socket errors | non-2xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, rows in throughput.items():
        for connections, row in rows.items():
            lines.append(
                f"| {name} | {connections} | {row['rps']:.0f} | {row.get('cpu_us', 0):.0f} | {row['p50']:.2f} | "
                f"{row['p90']:.2f} | {row['p99']:.2f} | {row['errors']} | {row['non2xx']} |"
            )

    def best(name: str) -> float:
        return max(row["rps"] for row in throughput[name].values())

    def at(name: str, connections: int = 50) -> dict:
        return throughput[name][str(connections)]

    grant, callback = best("grant osscallback"), best("callback osscallback")
    one, two = at("grant osscallback 1 worker(s)")["rps"], at("grant osscallback 2 worker(s)")["rps"]
    p50, p99 = at("grant osscallback")["p50"], at("grant osscallback")["p99"]
    cold = results["cold"]
    memory = results["memory"]
    rss = [row[1] for row in memory]
    fds = [row[2] for row in memory]
    checks = [
        ("grants vs the sample-like stand-in (best of each)", ratio(grant, best("grant sample stand-in")), "≥ 3x"),
        ("grants vs the tuned stand-in", ratio(grant, best("grant tuned stand-in")), "≥ 1.2x"),
        ("grants vs a bare Twisted GET resource", ratio(grant, best("grant bare Twisted GET")), "≥ 0.7x"),
        ("callbacks vs a bare Twisted POST resource", ratio(callback, best("callback bare Twisted POST")), "≥ 0.9x"),
        ("callbacks vs the sample-like stand-in", ratio(callback, best("callback sample stand-in")), "(context)"),
        ("grants vs a bare GET by server CPU per request, 50 connections",
         ratio(at("grant bare Twisted GET").get("cpu_us", 0), at("grant osscallback").get("cpu_us", 0)), "(context)"),
        ("callbacks vs a bare POST by server CPU per request, 50 connections",
         ratio(at("callback bare Twisted POST").get("cpu_us", 0), at("callback osscallback").get("cpu_us", 0)), "(context)"),
        ("2 workers vs 1 (grants, 50 connections)", ratio(two, one), "≥ 1.8x"),
        ("cold burst: key fetches for 50 callbacks", str(cold["fetches"]), "exactly 1"),
        ("cold burst: last answer after", f"{cold['last_answer'] * 1000:.0f} ms (fetch {cold['fetch_seconds'] * 1000:.0f} ms)",
         "≤ fetch + 50 ms"),
        ("cold burst: answers 200", f"{cold['ok']} of {cold['callbacks']}", "all"),
        ("grants p99 / p50 at 50 connections", f"{p99 / p50:.2f}", "≤ 3"),
        ("RSS, warm (both paths run once) to last sample", f"{rss[0]} → {rss[-1]} kB ({(rss[-1] / rss[0] - 1) * 100:+.1f}%)", "flat within 10%"),
        ("open files, warm to last sample", f"{fds[0]} → {fds[-1]}", "flat"),
    ]
    lines += ["", "## Ratios and targets", "", "| measure | this run | target |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in checks]
    lines += ["", "## Memory over 100k grants and 100k callbacks", "",
              "| after | RSS kB | open files |", "| --- | ---: | ---: |"]
    lines += [f"| {label} | {kb} | {n} |" for label, kb, n in memory]
    lines += ["", "![Throughput against concurrency](throughput.png)", ""]
    notes = (HERE / "NOTES.md").read_text() if (HERE / "NOTES.md").exists() else ""
    (HERE / "RESULTS.md").write_text("\n".join(lines) + ("\n" + notes if notes else ""))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, kind in zip(axes, ("grant", "callback")):
        for name, rows in throughput.items():
            if name.startswith(kind) and "worker" not in name:
                levels = sorted(int(c) for c in rows)
                axis.plot(levels, [rows[str(c)]["rps"] for c in levels], marker="o",
                          label=name.removeprefix(kind + " "))
        axis.set_xscale("log")
        axis.set_xticks([1, 10, 50, 200], ["1", "10", "50", "200"])
        axis.set_xlabel("concurrent connections")
        axis.set_ylabel("requests per second")
        axis.set_title("GET /policy" if kind == "grant" else "POST /callback")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(HERE / "throughput.png", dpi=110)


if __name__ == "__main__":
    main()
