#!/usr/bin/env python3
"""Turn raw.tsv (one line per measured run) into the Markdown results.

Usage: report.py RAW.tsv MACHINE.md PARAMS.txt > results.md
raw.tsv columns: workload tool rep wall_s cpu_s rss_kb status note requests body_bytes
status is ok | FAILED | na.
"""
import statistics
import sys

TOOL_ORDER = ["mastdl", "portal-curl-loop", "curl-parallel", "aria2c", "cp-floor"]
WL_ORDER = ["small", "mixed", "large", "rerun-small"]


def load(path):
    runs = {}
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 10 or p[0] == "workload":
                continue
            wl, tool = p[0], p[1]
            runs.setdefault((wl, tool), []).append(
                dict(
                    wall=float(p[3]), cpu=float(p[4]), rss=int(p[5]) / 1024.0,
                    status=p[6], note=p[7],
                    reqs=int(p[8]) if p[8] not in ("", "-") else None,
                    body=int(p[9]) if p[9] not in ("", "-") else None,
                )
            )
    return runs


def summary(rs):
    """None-valued medians and a text verdict when any run is not ok."""
    bad = [r for r in rs if r["status"] != "ok"]
    if bad:
        r = bad[0]
        word = "FAILED" if r["status"] == "FAILED" else "n/a"
        return None, "%s (%s)" % (word, r["note"]) if r["note"] else word
    med = lambda k: statistics.median(r[k] for r in rs)
    s = dict(wall=med("wall"), cpu=med("cpu"), rss=med("rss"), n=len(rs),
             lo=min(r["wall"] for r in rs), hi=max(r["wall"] for r in rs))
    reqs = [r["reqs"] for r in rs if r["reqs"] is not None]
    body = [r["body"] for r in rs if r["body"] is not None]
    s["reqs"] = statistics.median(reqs) if reqs else None
    s["body_max"] = max(body) if body else None
    s["body_med"] = statistics.median(body) if body else None
    return s, None


def fmt(x, nd=3):
    return "%.*f" % (nd, x)


def main():
    raw, machine, params = sys.argv[1:4]
    runs = load(raw)
    out = []
    w = out.append
    with open(params) as f:
        ptxt = f.read()
    w("# mastdl benchmark results\n")
    w(ptxt.rstrip() + "\n")

    w("## Transfers\n")
    w("Median of the repetitions; CPU = user + sys of the tool and its children; "
      "RSS = peak resident set of the largest process; ratio = mastdl median wall / this tool's "
      "(< 1 means mastdl is faster). Wall min–max shows the spread over the repetitions. "
      "Requests and MiB served (per run, median) come from nginx's access log.\n")
    w("| workload | tool | median wall s | median CPU s | median peak RSS MiB | ratio mastdl/tool (wall) | wall min–max s | requests | MiB served |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    sums = {}
    for wl in WL_ORDER:
        for tool in TOOL_ORDER:
            if (wl, tool) not in runs:
                continue
            s, verdict = summary(runs[(wl, tool)])
            sums[(wl, tool)] = s
            name = tool + (" (re-run of completed pull)" if wl.startswith("rerun") else "")
            if s is None:
                w("| %s | %s | %s | | | | | | |" % (wl, name, verdict))
                continue
            m = sums.get((wl, "mastdl"))
            if tool == "mastdl" or wl.startswith("rerun"):
                ratio = "—"
            elif m is None:
                ratio = "n/a"
            else:
                ratio = fmt(m["wall"] / s["wall"], 2) if s["wall"] > 0 else "n/a"
            reqs = "%d" % s["reqs"] if s["reqs"] is not None else ""
            mib = fmt(s["body_med"] / 2**20, 1) if s["body_med"] is not None else ""
            spread = "%s–%s" % (fmt(s["lo"]), fmt(s["hi"]))
            w("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                wl, name, fmt(s["wall"]), fmt(s["cpu"]), fmt(s["rss"], 1), ratio, spread, reqs, mib))
    w("")

    plans = sorted((int(wl.split("-")[1]), wl) for (wl, t) in runs if wl.startswith("plan-"))
    if plans:
        w("## Planning scale (`mastdl plan`, output to /dev/null)\n")
        w("| URIs | median wall s | median CPU s | median peak RSS MiB |")
        w("|---:|---:|---:|---:|")
        for n, wl in plans:
            s, verdict = summary(runs[(wl, "mastdl")])
            sums[(wl, "mastdl")] = s
            if s is None:
                w("| %d | %s | | |" % (n, verdict))
            else:
                w("| %d | %s | %s | %s |" % (n, fmt(s["wall"]), fmt(s["cpu"]), fmt(s["rss"], 1)))
        w("")

    # Target checks from the brief.
    def get(wl, tool):
        return sums.get((wl, tool))

    checks = []

    def check(name, target, fn):
        try:
            measured, ok = fn()
        except _NA as e:
            measured, ok = "n/a (%s)" % e, None
        checks.append((name, target, measured, "PASS" if ok else ("FAIL" if ok is not None else "n/a")))

    class _NA(Exception):
        pass

    def need(wl, tool):
        s = get(wl, tool)
        if s is None:
            raise _NA("no valid %s %s result" % (tool, wl))
        return s

    def ratio_check(wl, peer, limit):
        def fn():
            m, p = need(wl, "mastdl"), need(wl, peer)
            r = m["wall"] / p["wall"]
            return "%s s / %s s = %.3f×" % (fmt(m["wall"]), fmt(p["wall"]), r), r <= limit
        return fn

    check("small: mastdl vs portal curl loop", "≤ 0.05×", ratio_check("small", "portal-curl-loop", 0.05))
    check("small: mastdl vs aria2c", "≤ 0.7×", ratio_check("small", "aria2c", 0.7))
    check("small: mastdl vs curl --parallel", "≤ 0.7×", ratio_check("small", "curl-parallel", 0.7))

    def large_peers():
        m = need("large", "mastdl")
        peers = [(t, get("large", t)) for t in ("curl-parallel", "aria2c") if get("large", t)]
        if not peers:
            raise _NA("no valid curl/aria2c large result")
        t, best = min(peers, key=lambda p: p[1]["wall"])
        r = m["wall"] / best["wall"]
        return "%s s / %s s (%s) = %.3f×" % (fmt(m["wall"]), fmt(best["wall"]), t, r), r <= 1.05

    check("large: mastdl vs min(curl --parallel, aria2c)", "≤ 1.05×", large_peers)
    check("large: mastdl vs cp -r floor", "≤ 2.5×", ratio_check("large", "cp-floor", 2.5))

    def rss_large():
        m = need("large", "mastdl")
        return "%.1f MiB" % m["rss"], m["rss"] <= 32

    check("large: mastdl peak RSS", "≤ 32 MiB", rss_large)

    def plan_1m():
        m = need("plan-1000000", "mastdl")
        return "%s s, %.1f MiB" % (fmt(m["wall"]), m["rss"]), m["wall"] <= 2 and m["rss"] <= 200

    check("plan of 1,000,000 URIs", "≤ 2 s and ≤ 200 MiB", plan_1m)

    def rerun():
        m = need("rerun-small", "mastdl")
        body = m["body_max"]
        if body is None:
            raise _NA("no access-log figure")
        return "%s s, %d body bytes (max over runs)" % (fmt(m["wall"]), body), m["wall"] <= 0.5 and body == 0

    check("re-run of completed small pull", "≤ 0.5 s, 0 body bytes", rerun)

    w("## Target checks\n")
    w("| check | target | measured | verdict |")
    w("|---|---|---|---|")
    for c in checks:
        w("| %s | %s | %s | %s |" % c)
    w("")
    with open(machine) as f:
        w(f.read().rstrip() + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
