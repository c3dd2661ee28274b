#!/usr/bin/env python3
"""Turns one bench/run.sh output directory into the Markdown summary: the table, the ratios
against the targets (docs/benchmarks.md), the scaling run and the seeding times.

usage: report.py OUT_DIR
"""

import csv
import json
import sys
from pathlib import Path


def num(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def fmt(value, digits=0):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def main():
    out = Path(sys.argv[1])
    with open(out / "results.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    by = {(r["system"], r["workload"]): r for r in rows}

    def get(system, workload, field):
        row = by.get((system, workload))
        return num(row[field]) if row else None

    print(f"# Benchmark run {out.name}\n")
    env = out / "environment.txt"
    if env.exists():
        print("```text")
        print(env.read_text().rstrip())
        print("```\n")

    print("## Results\n")
    print("req/s is transactions/s for pgbench. Peak RSS is the server process's VmHWM during the "
          "measured run (reset before it); CPU is the server process's user+system time per "
          "request; db xact/req counts PostgreSQL transactions (pg_stat_database) per request; "
          "load1 is the machine's 1-minute load average when the run started.\n")
    print("| system | workload | req/s | p50 ms | p99 ms | non-2xx | socket errors | peak RSS MiB "
          "| CPU us/req | db xact/req | load1 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['system']} | {r['workload']} | {fmt(num(r['rps']))} | {r['p50_ms']} | "
              f"{r['p99_ms']} | {r['non2xx']} | {r['sock_err']} | {r['peak_rss_mib']} | "
              f"{r['cpu_us_per_req']} | {r['db_xact_per_req']} | {r['load1']} |")
    print()

    def ratio(a, b):
        return a / b if a is not None and b else None

    checks = []

    def at_least(label, value, goal, unit="x"):
        met = None if value is None else value >= goal
        checks.append((label, value, f">= {goal:g}{unit}", met, unit))

    def at_most(label, value, goal, unit):
        met = None if value is None else value <= goal
        checks.append((label, value, f"<= {goal:g} {unit}", met, unit))

    rps = lambda s, w: get(s, w, "rps")  # noqa: E731
    at_least("PostgreSQL READ / OpenBao-on-PostgreSQL READ",
             ratio(rps("svc-pg", "READ"), rps("bao-pg", "READ")), 5)
    at_least("PostgreSQL READ / pgbench -S", ratio(rps("svc-pg", "READ"), rps("pgbench", "select-S")), 0.6)
    at_least("PostgreSQL WRITE / OpenBao-on-PostgreSQL WRITE",
             ratio(rps("svc-pg", "WRITE"), rps("bao-pg", "WRITE")), 5)
    at_least("PostgreSQL WRITE / pgbench upsert", ratio(rps("svc-pg", "WRITE"), rps("pgbench", "upsert")), 0.6)
    at_least("PostgreSQL CREATE / OpenBao-on-PostgreSQL CREATE",
             ratio(rps("svc-pg", "CREATE"), rps("bao-pg", "CREATE")), 5)
    at_least("SQLite READ / OpenBao-raft READ", ratio(rps("svc-sqlite", "READ"), rps("bao-raft", "READ")), 3)
    at_least("SQLite WRITE / OpenBao-raft WRITE (synchronous=FULL)",
             ratio(rps("svc-sqlite", "WRITE"), rps("bao-raft", "WRITE")), 2)
    def mean_of(prefix, workload, field):
        values = [num(r[field]) for r in rows
                  if r["workload"] == workload and r["system"].startswith(prefix)]
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    for system, store in (("svc-pg", "PostgreSQL"), ("svc-sqlite", "SQLite")):
        for workload in ("READ", "WRITE"):
            at_least(f"{store} {workload} with the audit trail / without it (mean of the A-B rounds)",
                     ratio(mean_of(f"{system} audit=file (", workload, "rps"),
                           mean_of(f"{system} audit=off (", workload, "rps")),
                     0.8)
    at_most("PostgreSQL READ p99", get("svc-pg", "READ", "p99_ms"), 10, "ms")
    at_most("SQLite READ p99", get("svc-sqlite", "READ", "p99_ms"), 10, "ms")

    small = [num(r["p50_ms"]) for r in rows if r["system"].startswith("scale N=1000 (")]
    large = [num(r["p50_ms"]) for r in rows
             if r["system"].startswith("scale N=") and not r["system"].startswith("scale N=1000 (")]
    small = [v for v in small if v is not None]
    large = [v for v in large if v is not None]
    if small and large:
        at_most("READ p50 at the large N / at N=1,000 (mean of the A-B-A-B rounds)",
                (sum(large) / len(large)) / (sum(small) / len(small)), 1.5, "x")
    def peak(pred):
        values = [num(r["peak_rss_mib"]) for r in rows if r["workload"] == "READ" and pred(r["system"])]
        values = [v for v in values if v is not None]
        return max(values) if values else None

    at_most("peak server RSS under READ, PostgreSQL (highest of svc-pg and scale runs)",
            peak(lambda s: s == "svc-pg" or s.startswith("scale")), 64, "MiB")
    at_most("peak server RSS under READ, SQLite", peak(lambda s: s == "svc-sqlite"), 64, "MiB")
    for r in rows:
        if r["workload"] == "READ" and r["system"].startswith("svc-sqlite pool_size="):
            at_most(f"peak server RSS under READ, SQLite with {r['system'].split(' ', 1)[1]}",
                    num(r["peak_rss_mib"]), 64, "MiB")

    print("## Targets (ratios within this run)\n")
    print("| target | measured | goal | met |")
    print("| --- | ---: | --- | --- |")
    for label, value, goal, met, unit in checks:
        shown = "n/a" if value is None else (f"{value:.2f}x" if unit == "x" else f"{value:.2f} {unit}")
        verdict = "n/a" if met is None else ("yes" if met else "**no**")
        print(f"| {label} | {shown} | {goal} | {verdict} |")
    print()

    info = []
    sql = rps("pgbench", "svc-read-sql")
    if sql:
        info.append(f"- the service's own read statement under pgbench: {fmt(sql)} tps; "
                    f"service READ is {fmt(ratio(rps('svc-pg', 'READ'), sql), 2)}x of it")
    for system in ("svc-pg", "svc-sqlite", "bao-pg", "bao-raft"):
        health, read = rps(system, "HEALTH"), rps(system, "READ")
        if health and read:
            info.append(f"- {system}: READ is {fmt(read / health, 2)}x of its bare HTTP ceiling "
                        f"(HEALTH {fmt(health)} req/s)")
    for system in ("svc-pg", "svc-sqlite"):
        full, cond = rps(system, "READ"), rps(system, "READ-304")
        cpu_full, cpu_cond = get(system, "READ", "cpu_us_per_req"), get(system, "READ-304", "cpu_us_per_req")
        if full and cond:
            cpu = ""
            if cpu_full and cpu_cond:
                cpu = (f"; server CPU {fmt(cpu_cond)} vs {fmt(cpu_full)} us per request "
                       f"({fmt(cpu_cond / cpu_full, 2)}x)")
            info.append(f"- {system}: conditional READ (every answer 304) is {fmt(cond / full, 2)}x "
                        f"the requests/s of the full READ ({fmt(cond)} vs {fmt(full)}){cpu}")
    for system in ("svc-pg", "svc-sqlite"):
        for workload in ("READ", "WRITE"):
            cpu_on = mean_of(f"{system} audit=file (", workload, "cpu_us_per_req")
            cpu_off = mean_of(f"{system} audit=off (", workload, "cpu_us_per_req")
            if cpu_on and cpu_off:
                info.append(f"- {system} {workload}: server CPU {fmt(cpu_on)} us per request with the "
                            f"audit trail, {fmt(cpu_off)} without ({fmt(cpu_on / cpu_off, 2)}x)")
    if info:
        print("Context:\n")
        print("\n".join(info))
        print()

    seeds = out / "seeding.tsv"
    if seeds.exists():
        with open(seeds) as f:
            entries = list(csv.DictReader(f, delimiter="\t"))
        if entries:
            print("## Seeding (HTTP APIs; the large scaling database in process, bench_seed)\n")
            print("| what | result |")
            print("| --- | --- |")
            for e in entries:
                try:
                    detail = ", ".join(f"{k}={v}" for k, v in json.loads(e["result"]).items())
                except ValueError:
                    detail = e["result"]
                print(f"| {e['what']} | {detail} |")
            print()


if __name__ == "__main__":
    main()
