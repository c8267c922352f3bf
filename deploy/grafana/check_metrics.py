"""Checks that the dashboard and the alert rules name metrics that exist.

    python3 deploy/grafana/check_metrics.py \
        --metrics-url http://127.0.0.1:19081/metrics [--metrics-url ...] \
        [--prometheus http://127.0.0.1:19090]

Every metric name in a query of deploy/grafana/*.json and in an `expr` of
deploy/prometheus/rules/*.yml must be
  - a recording rule of the rule files (names with a colon), or
  - exported: in a live scrape of one of --metrics-url, or (with
    --prometheus) among the names Prometheus has ingested from those
    scrapes during the run (a counter appears only after its first event,
    e.g. the pool's timeouts after a Postgres pause), or `up` / `ALERTS`.
Exit status 1 names every query whose metric does not exist. Standard
library only; the PromQL is scanned, not parsed, which is enough for
names.
"""

import argparse
import glob
import json
import os
import re
import sys
import urllib.parse
import urllib.request

KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "offset", "bool", "inf", "nan",
}
SYNTHETIC = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped"}
HERE = os.path.dirname(os.path.abspath(__file__))
RULES_DIR = os.path.join(HERE, "..", "prometheus", "rules")


def metric_names(expr):
    """Metric names in a PromQL expression: identifiers that are not
    functions (followed by `(`), keywords, label names or strings."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$__\w+|\$\w+", " ", text)  # Grafana variables
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = m.group(0)
        after = text[m.end():].lstrip()
        before = text[: m.start()]
        if after.startswith("(") or name.lower() in KEYWORDS:
            continue
        if re.search(r"[0-9.]$", before):  # part of a number such as 1e3 or a duration
            continue
        names.add(name)
    return names


def dashboard_queries(paths):
    for path in paths:
        with open(path) as f:
            dash = json.load(f)
        panels = list(dash.get("panels", []))
        while panels:
            panel = panels.pop()
            panels.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    yield f"{os.path.basename(path)}: {panel.get('title')}", target["expr"]
        for ann in dash.get("annotations", {}).get("list", []):
            if ann.get("expr"):
                yield f"{os.path.basename(path)}: annotation {ann.get('name')}", ann["expr"]


def rule_queries(paths):
    """(where, expr) of every rule, and the recording rules' names. The
    rule files are simple YAML: `record:`/`alert:` lines followed by an
    `expr:` that is inline or a `|` block."""
    records = set()
    queries = []
    for path in paths:
        lines = open(path).read().splitlines()
        name = None
        i = 0
        while i < len(lines):
            line = lines[i]
            m = re.match(r"\s*-?\s*(record|alert):\s*(\S+)", line)
            if m:
                name = m.group(2)
                if m.group(1) == "record":
                    records.add(name)
            m = re.match(r"(\s*)expr:\s*(.*)$", line)
            if m:
                indent, rest = len(m.group(1)), m.group(2)
                if rest.strip() in ("|", "|-", ">", ">-"):
                    body = []
                    i += 1
                    while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                        body.append(lines[i])
                        i += 1
                    queries.append((f"{os.path.basename(path)}: {name}", "\n".join(body)))
                    continue
                queries.append((f"{os.path.basename(path)}: {name}", rest))
            i += 1
    return queries, records


def scraped_names(urls):
    names = set()
    for url in urls:
        with urllib.request.urlopen(url, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line and not line.startswith("#"):
                    names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return names


def ingested_names(prometheus):
    url = prometheus.rstrip("/") + "/api/v1/label/__name__/values"
    with urllib.request.urlopen(url, timeout=5) as response:
        return set(json.load(response)["data"])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--metrics-url", action="append", default=[], required=True)
    p.add_argument("--prometheus")
    p.add_argument("--dashboard", action="append", default=None)
    p.add_argument("--rules", action="append", default=None)
    p.add_argument("--documented", help="a Markdown file listing exported names in backticks")
    p.add_argument("--allow-unseen", action="append", default=[])
    args = p.parse_args()
    dashboards = args.dashboard or sorted(glob.glob(os.path.join(HERE, "*.json")))
    rules = args.rules or sorted(glob.glob(os.path.join(RULES_DIR, "*.yml")))
    rule_exprs, records = rule_queries(rules)
    scraped = scraped_names(args.metrics_url)
    ingested = ingested_names(args.prometheus) if args.prometheus else set()
    documented = set()
    if args.documented:
        documented = set(re.findall(r"`([A-Za-z_:][A-Za-z0-9_:]*)", open(args.documented).read()))
        # A histogram documented by its family name exports these series.
        documented |= {f"{n}_{s}" for n in set(documented) for s in ("bucket", "sum", "count")}
    unseen_ok = documented | {n for arg in args.allow_unseen for n in arg.split(",") if n}
    known = scraped | ingested | SYNTHETIC | records
    missing = []
    unseen = set()
    checked = set()
    for where, expr in list(dashboard_queries(dashboards)) + rule_exprs:
        for name in sorted(metric_names(expr)):
            checked.add(name)
            if name in known:
                continue
            if name in unseen_ok:
                unseen.add(name)
            else:
                missing.append(f"{where}: {name}")
    only_ingested = sorted(n for n in checked if n in ingested and n not in scraped)
    print(
        f"{len(checked)} metric names in {len(dashboards)} dashboard(s) and {len(rules)} rule file(s); "
        f"{len(scraped)} names in the live scrape of {len(args.metrics_url)} target(s)"
        + (f", {len(ingested)} ingested by Prometheus" if args.prometheus else "")
    )
    if only_ingested:
        print(f"  seen during the run but not in the last scrape: {', '.join(only_ingested)}")
    if unseen:
        print(f"  documented or allowed, not seen in this run: {', '.join(sorted(unseen))}")
    if missing:
        print("names that no scrape exports:", file=sys.stderr)
        for line in missing:
            print(f"  {line}", file=sys.stderr)
        return 1
    print("every name exists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
