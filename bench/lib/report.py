#!/usr/bin/env python3
"""Turn raw.tsv (one line per measured run) into the Markdown results.

Usage: report.py RAW.tsv MACHINE.md PARAMS.txt > results.md
       report.py wan RAW-wan.tsv MACHINE.md META.json [--into RESULTS.md] > results-wan.md
raw.tsv columns: workload tool rep wall_s cpu_s rss_kb status note requests body_bytes
raw-wan.tsv columns: workload proto tool rep wall_s cpu_s rss_kb status note connections
  peak_connections peak_requests requests h2_connections h2_streams body_bytes scale extra
status is ok | FAILED | na. `--into` also replaces the `## WAN profile` section of
RESULTS.md (between its begin/end markers; appended when absent).
"""
import json
import statistics
import sys

TOOL_ORDER = ["mastdl", "mastdl-before", "portal-curl-loop", "curl-parallel", "aria2c", "cp-floor"]
WL_ORDER = ["small", "mixed", "large", "close", "rerun-small"]


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
    check("close (Connection: close): mastdl vs curl --parallel", "≤ 1.5×",
          ratio_check("close", "curl-parallel", 1.5))

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


# ---------------------------------------------------------------- WAN profile

WAN_BEGIN = "<!-- wan:begin (generated by bench/run.sh --wan; do not edit by hand) -->"
WAN_END = "<!-- wan:end -->"
WAN_TOOLS = ["mastdl", "mastdl-j16", "mastdl-j50", "mastdl-0.1.0", "mastdl-limit", "curl-parallel",
             "aria2c", "aria2c-x16", "portal-curl-loop"]
WAN_WLS = ["small", "small-h2", "large", "large-h2", "mixed", "mixed-h2", "limit"]


def _num(x, kind=float):
    return None if x in ("", "-", None) else kind(x)


def wan_load(path):
    runs = {}
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 18 or p[0] == "workload":
                continue
            runs.setdefault((p[0], p[2]), []).append(dict(
                proto=p[1], wall=float(p[4]) * float(p[16]), raw_wall=float(p[4]), cpu=float(p[5]),
                rss=int(p[6]) / 1024.0, status=p[7], note=p[8],
                conns=_num(p[9], int), peak_conns=_num(p[10], int), peak_reqs=_num(p[11], int),
                reqs=_num(p[12], int), h2_conns=_num(p[13], int), h2_streams=_num(p[14], int),
                body=_num(p[15], int), scale=float(p[16]), extra=_num(p[17])))
    return runs


def wan_summary(rs):
    bad = [r for r in rs if r["status"] != "ok"]
    if bad:
        r = bad[0]
        word = "FAILED" if r["status"] == "FAILED" else "n/a"
        return None, ("%s (%s)" % (word, r["note"]) if r["note"] else word)
    med = lambda k: statistics.median(r[k] for r in rs)
    top = lambda k: max((r[k] for r in rs if r[k] is not None), default=None)
    vals = lambda k: [r[k] for r in rs if r[k] is not None]
    s = dict(wall=med("wall"), lo=min(r["wall"] for r in rs), hi=max(r["wall"] for r in rs),
             rss=max(r["rss"] for r in rs), n=len(rs), scale=rs[0]["scale"],
             conns=statistics.median(vals("conns")) if vals("conns") else None,
             conns_max=top("conns"), peak_conns=top("peak_conns"), peak_reqs=top("peak_reqs"),
             h2_streams=statistics.median(vals("h2_streams")) if vals("h2_streams") else None,
             body=statistics.median(vals("body")) if vals("body") else None,
             extra=statistics.median(vals("extra")) if vals("extra") else None)
    return s, None


def wan_main(argv):
    raw, machine, meta_path = argv[:3]
    into = argv[argv.index("--into") + 1] if "--into" in argv else None
    meta = json.load(open(meta_path))
    runs = wan_load(raw)
    base_mode = meta["baseline"]
    out = []
    w = out.append

    def spec_text(spec):
        parts = []
        for part in spec.split(","):
            n, size = (int(x) for x in part.split("x"))
            unit = "%d GiB" % (size >> 30) if size >= 1 << 30 else (
                "%d MiB" % (size >> 20) if size >= 1 << 20 else "%d KiB" % (size >> 10))
            parts.append("%s × %s" % ("{:,}".format(n), unit))
        return " + ".join(parts)

    spec = meta["spec"]
    small_n = int(spec["small"].split("x")[0])
    large_n = int(spec["large"].split("x")[0])
    label = {
        "mastdl": "mastdl (defaults)",
        "mastdl-j16": "mastdl -j 16",
        "mastdl-j50": "mastdl -j 50",
        "mastdl-0.1.0": "mastdl 0.1.0 defaults (-j 4)" if base_mode == "binary" else "mastdl -j 4 (0.1.0's default)",
        "mastdl-limit": "mastdl --limit-rate %s" % meta["limit_rate"],
        "curl-parallel": "curl --parallel (defaults: --parallel-max 50)",
        "aria2c": "aria2c (defaults: -j 5, -x 1)",
        "aria2c-x16": "aria2c -j 1 -x 16 -s 16",
        "portal-curl-loop": "portal loop (one curl per file)",
    }
    w(WAN_BEGIN)
    w("## WAN profile\n")
    if meta["quick"]:
        w("**Quick mode: tiny sizes, one repetition; the target checks are not meaningful here.**\n")
    rate = meta["rate"]
    w("Command: `%s`\n" % meta["command"])
    w("Served by `bench/wan-archive` on 127.0.0.1, a loopback MAST download endpoint that adds only "
      "what a wide-area link costs: **%d ms before each response's first byte, +%d ms on a "
      "connection's first request** (TCP + TLS handshakes), and **%s bytes/s per connection** "
      "(curl's syntax, powers of 1024; the streams of an HTTP/2 connection share it). "
      "h1 = plain HTTP/1.1; h2 = TLS with ALPN `h2` (self-signed CA given to every tool: mastdl "
      "`--cacert`, curl `--cacert`, aria2c `--ca-certificate`). aria2c speaks only HTTP/1.1, so in "
      "the h2 rounds it uses HTTP/1.1 over TLS.\n" % (meta["ttfb_ms"], meta["connect_ms"], rate))
    w("Every tool with its default settings unless the row says otherwise (aria2c also gets "
      "`--file-allocation=none` and quiet console flags); %d repetition(s), tools interleaved within "
      "each; every run into a fresh folder and its bytes compared with the source (sizes and "
      "content). Wall = median; min–max over the repetitions. Connections opened = median per run; "
      "peak concurrent connections / requests = the largest over the repetitions, as counted by "
      "the emulator. RSS = largest peak resident set over the repetitions. The portal loop runs "
      "on the first %d of the %s small files (1 of the %d large ones) and its time is extrapolated "
      "linearly (it is sequential); its counts are for that subset. Runs are capped at %d s.\n"
      % (meta["reps"], meta["portal_subset"], "{:,}".format(small_n), large_n, meta["timeout"]))
    w("Workloads: small = %s; large = %s; mixed = %s (the two big files listed first); "
      "limit = large with `--limit-rate %s`.\n" % (
          spec_text(spec["small"]), spec_text(spec["large"]), spec_text(spec["mixed"]), meta["limit_rate"]))

    sums = {}
    for (wl, tool), rs in runs.items():
        sums[(wl, tool)] = wan_summary(rs)

    def get(wl, tool):
        s = sums.get((wl, tool))
        return s[0] if s else None

    def baseline_of(wl):
        if wl.startswith("small"):
            if base_mode == "same":
                return "mastdl", "mastdl 0.1.0 defaults (-j 4): this binary"
            return "mastdl-0.1.0", label["mastdl-0.1.0"]
        if wl.startswith("large"):
            return "aria2c-x16", label["aria2c-x16"]
        return None, None

    def cell(x, nd=0):
        return "—" if x is None else ("%.*f" % (nd, x))

    titles = {"small": "small over HTTP/1.1", "small-h2": "small over HTTP/2 (TLS)",
              "large": "large over HTTP/1.1", "large-h2": "large over HTTP/2 (TLS)"}
    for wl in ["small", "small-h2", "large", "large-h2"]:
        tools = [t for t in WAN_TOOLS if (wl, t) in sums]
        if not tools:
            continue
        btool, bname = baseline_of(wl)
        w("### %s (%s)\n" % (titles[wl], spec_text(spec[wl.split("-")[0]])))
        w("Target baseline: %s.\n" % bname)
        w("| tool | median wall s | min–max s | vs curl --parallel | vs target baseline | connections opened | peak concurrent connections | peak concurrent requests | HTTP/2 streams | peak RSS MiB |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        curl = get(wl, "curl-parallel")
        base = get(wl, btool) if btool else None
        for t in tools:
            s, verdict = sums[(wl, t)]
            name = label[t]
            if t == "curl-parallel" and wl.endswith("-h2"):
                name = "curl --parallel --http2 (defaults: --parallel-max 50)"
            if t == "portal-curl-loop" and s is not None and s["scale"] != 1:
                name += " — extrapolated ×%g" % s["scale"]
            if s is None:
                w("| %s | %s | | | | | | | | |" % (name, verdict))
                continue
            rc = "%.2f×" % (s["wall"] / curl["wall"]) if curl else "n/a"
            rb = "%.2f×" % (s["wall"] / base["wall"]) if base else "n/a"
            w("| %s | %.2f | %.2f–%.2f | %s | %s | %s | %s | %s | %s | %.1f |" % (
                name, s["wall"], s["lo"], s["hi"], rc, rb, cell(s["conns"]), cell(s["peak_conns"]),
                cell(s["peak_reqs"]), cell(s["h2_streams"]) if s["h2_streams"] else "—", s["rss"]))
        w("")

    for wl in ["mixed", "mixed-h2"]:
        if (wl, "mastdl") not in sums:
            continue
        alone_wl = "small-h2" if wl.endswith("h2") else "small"
        proto = "HTTP/2 (TLS)" if wl.endswith("h2") else "HTTP/1.1"
        w("### mixed over %s (%s)\n" % (proto, spec_text(spec["mixed"])))
        w("Last small file done = seconds from the start of the run to the last `finish` event of a "
          "small file in mastdl's `--log-format json` output (stamped on arrival); small alone = "
          "mastdl (defaults)' median on the `%s` workload (the same %s small files' worth, same profile). "
          "Other tools are not run here (each needs ≥ 1 GiB ÷ the per-connection rate per big file).\n"
          % (alone_wl, "{:,}".format(small_n)))
        w("| tool | median wall s | last small file done s (median) | small alone s | ratio | connections opened | peak concurrent connections | peak concurrent requests | peak RSS MiB |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        s, verdict = sums[(wl, "mastdl")]
        alone = get(alone_wl, "mastdl")
        if s is None:
            w("| mastdl (defaults) | %s | | | | | | | |" % verdict)
        else:
            ratio = "%.2f×" % (s["extra"] / alone["wall"]) if (alone and s["extra"]) else "n/a"
            w("| mastdl (defaults) | %.2f | %s | %s | %s | %s | %s | %s | %.1f |" % (
                s["wall"], cell(s["extra"], 2), cell(alone["wall"] if alone else None, 2), ratio,
                cell(s["conns"]), cell(s["peak_conns"]), cell(s["peak_reqs"]), s["rss"]))
        w("")

    lim_bps = parse_rate_1024(meta["limit_rate"])
    if ("limit", "mastdl-limit") in sums:
        w("### --limit-rate %s on large over HTTP/1.1\n" % meta["limit_rate"])
        w("Mean rate = bytes ÷ wall time of the whole run (start-up and first-byte delays included). "
          "`%s` is %s bytes/s (%.1f MB/s).\n" % (meta["limit_rate"], "{:,}".format(lim_bps), lim_bps / 1e6))
        w("| tool | median wall s | mean rate MB/s | vs requested | connections opened | peak RSS MiB |")
        w("|---|---:|---:|---:|---:|---:|")
        s, verdict = sums[("limit", "mastdl-limit")]
        if s is None:
            w("| %s | %s | | | | |" % (label["mastdl-limit"], verdict))
        else:
            r = (s["body"] or 0) / s["wall"]
            w("| %s | %.2f | %.1f | %+.1f %% | %s | %.1f |" % (
                label["mastdl-limit"], s["wall"], r / 1e6, 100 * (r / lim_bps - 1), cell(s["conns"]), s["rss"]))
        w("")

    # Targets (issue 14), each from this one run.
    checks = []

    class NA(Exception):
        pass

    def need(wl, tool):
        s = get(wl, tool)
        if s is None:
            v = sums.get((wl, tool))
            raise NA(v[1] if v else "not run")
        return s

    def check(name, target, fn):
        try:
            measured, ok = fn()
            verdict = "met" if ok else "**not met**"
        except NA as e:
            measured, verdict = "n/a (%s)" % str(e)[:80], "n/a"
        checks.append((name, target, measured, verdict))

    def ratio(wl, a, b, limit):
        def fn():
            x, y = need(wl, a), need(wl, b)
            r = x["wall"] / y["wall"]
            return "%.2f s / %.2f s = %.2f×" % (x["wall"], y["wall"], r), r <= limit
        return fn

    small_base = "mastdl" if base_mode == "same" else "mastdl-0.1.0"
    check("small, HTTP/1.1: mastdl defaults vs mastdl 0.1.0 defaults (-j 4)", "≤ 0.35×",
          ratio("small", "mastdl", small_base, 0.35))

    def conns_h1():
        s = need("small", "mastdl")
        return "%d at once (max over runs)" % s["peak_conns"], s["peak_conns"] <= 16
    check("small, HTTP/1.1: mastdl defaults, concurrent connections", "≤ 16", conns_h1)
    check("small, HTTP/1.1: mastdl -j 50 vs curl --parallel", "≤ 1.0×",
          ratio("small", "mastdl-j50", "curl-parallel", 1.0))
    check("small, HTTP/2: mastdl defaults vs curl --parallel --http2", "≤ 1.0×",
          ratio("small-h2", "mastdl", "curl-parallel", 1.0))

    def conns_h2():
        s = need("small-h2", "mastdl")
        return "%d opened (max over runs), %s HTTP/2 streams" % (s["conns_max"], cell(s["h2_streams"])), \
            s["conns_max"] <= 2 and (s["h2_streams"] or 0) > 0
    check("small, HTTP/2: mastdl defaults, connections (over HTTP/2)", "≤ 2", conns_h2)
    check("large, HTTP/1.1: mastdl defaults vs curl --parallel", "≤ 0.35×",
          ratio("large", "mastdl", "curl-parallel", 0.35))
    check("large, HTTP/1.1: mastdl defaults vs aria2c -j 1 -x 16 -s 16", "≤ 1.0×",
          ratio("large", "mastdl", "aria2c-x16", 1.0))

    def mixed():
        s, alone = need("mixed", "mastdl"), need("small", "mastdl")
        if s["extra"] is None:
            raise NA("no finish events")
        r = s["extra"] / alone["wall"]
        return "%.2f s / %.2f s = %.2f×" % (s["extra"], alone["wall"], r), r <= 1.5
    check("mixed, HTTP/1.1: last small file done vs small files alone", "≤ 1.5×", mixed)

    def limit():
        s = need("limit", "mastdl-limit")
        r = (s["body"] or 0) / s["wall"]
        dev = r / lim_bps - 1
        return "%.1f MB/s (%+.1f %% of %s; %+.1f %% of 50 MB/s)" % (
            r / 1e6, 100 * dev, meta["limit_rate"], 100 * (r / 50e6 - 1)), abs(dev) <= 0.10
    check("--limit-rate %s on large: mean rate" % meta["limit_rate"], "within ±10 %", limit)

    def rss():
        vals = [(s[0]["rss"], wl, t) for (wl, t), s in sums.items() if t.startswith("mastdl")
                and t != "mastdl-0.1.0" and s[0] is not None]
        if not vals:
            raise NA("no mastdl run")
        m = max(vals)
        return "%.1f MiB (%s, %s)" % m, m[0] <= 32
    check("mastdl peak RSS, every run above", "≤ 32 MiB", rss)

    w("### Targets (issue 14)\n")
    w("| target | limit | measured | verdict |")
    w("|---|---|---|---|")
    for c in checks:
        w("| %s | %s | %s | %s |" % c)
    w("")
    w("### Machine\n")
    with open(machine) as f:
        w(f.read().rstrip() + "\n")
    w(WAN_END)
    text = "\n".join(out)
    print(text)
    if into:
        try:
            cur = open(into).read()
        except OSError:
            cur = ""
        if WAN_BEGIN in cur and WAN_END in cur:
            a = cur.index(WAN_BEGIN)
            b = cur.index(WAN_END) + len(WAN_END)
            new = cur[:a] + text + cur[b:]
        else:
            new = cur.rstrip("\n") + "\n\n" + text + "\n"
        with open(into + ".tmp", "w") as f:
            f.write(new)
        import os
        os.replace(into + ".tmp", into)


def parse_rate_1024(s):
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(s[-1].lower(), 1)
    return int(s[:-1] if mult != 1 else s) * mult


def scale_main(argv):
    """report.py scale RAW-scale.tsv MACHINE.md: the scale profile's tables and target checks."""
    raw, machine = argv[0], argv[1]
    rows = []
    with open(raw) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 12 or p[0] == "binary":
                continue
            rows.append(dict(bin=p[0], n=int(p[1]), run=p[2], wall=float(p[3]), cpu=float(p[4]),
                             rss=int(p[5] or 0) / 1024.0, exit=p[6], reqs=int(p[7]), json=int(p[8]),
                             html=int(p[9]), pages=int(p[10]), shot=p[11]))
    out = []
    w = out.append
    w("Command: `bench/run.sh --scale` (1 KiB files served by nginx on 127.0.0.1; mastdl with default flags, "
      "`--progress never -q`; every first run into a fresh folder; the re-run is of the complete pull)")
    w("")
    w("| binary | files | run | wall s | CPU s | peak RSS MiB | files/s | exit | requests | MANIFEST.json MB | MANIFEST.HTML (+pages) MB | pages | Chromium first screenshot s |")
    w("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        fps = "" if r["run"] == "plan" else "%.0f" % (r["n"] / r["wall"] if r["wall"] > 0 else 0)
        w("| %s | %d | %s | %.3f | %.2f | %.1f | %s | %s | %d | %.1f | %.1f | %d | %s |" % (
            r["bin"], r["n"], r["run"], r["wall"], r["cpu"], r["rss"], fps, r["exit"], r["reqs"],
            r["json"] / 1e6, r["html"] / 1e6, r["pages"], r["shot"]))
    w("")

    def get(b, n, run):
        for r in rows:
            if r["bin"] == b and r["n"] == n and r["run"] == run:
                return r
        return None

    checks = []

    def check(name, target, measured, ok):
        checks.append((name, target, measured, "PASS" if ok else "FAIL"))

    big = max([r["n"] for r in rows if r["run"] != "plan"] or [0])
    small = min([r["n"] for r in rows if r["run"] != "plan"] or [0])
    first, rerun = get("this", big, "first"), get("this", big, "rerun")
    if first and rerun:
        peak = max(first["rss"], rerun["rss"])
        check("%d files: peak RSS, first run and re-run" % big, "<= 160 MiB",
              "%.1f / %.1f MiB" % (first["rss"], rerun["rss"]), peak <= 160)
        check("%d files: re-run of the complete pull" % big, "<= 4 s, 0 requests",
              "%.3f s, %d requests" % (rerun["wall"], rerun["reqs"]), rerun["wall"] <= 4 and rerun["reqs"] == 0)
        check("%d files: first run complete" % big, "exit 0, one request a file",
              "exit %s, %d requests" % (first["exit"], first["reqs"]), first["exit"] == "0" and first["reqs"] == big)
    lo = get("this", small, "first")
    if first and lo and big != small:
        a, b = lo["n"] / lo["wall"], first["n"] / first["wall"]
        check("files/s at %d vs at %d" % (big, small), ">= 0.9x", "%.0f / %.0f = %.2fx" % (b, a, b / a), b >= 0.9 * a)
    for n, limit in ((1000000, 3.0), (100000, 2.0)):
        r = get("this", n, "rerun")
        if r:
            ok = r["shot"] not in ("timeout", "na", "-") and float(r["shot"]) <= limit
            check("MANIFEST.HTML of %d rows: Chromium's first screenshot" % n, "<= %.0f s" % limit, r["shot"] + " s", ok)
    plan = [r for r in rows if r["bin"] == "this" and r["run"] == "plan"]
    if plan:
        r = plan[0]
        check("plan of %d URIs" % r["n"], "<= 2 s and <= 160 MiB", "%.3f s, %.1f MiB" % (r["wall"], r["rss"]),
              r["wall"] <= 2 and r["rss"] <= 160 and r["exit"] == "0")
    w("### Target checks")
    w("")
    w("| check | target | measured | verdict |")
    w("|---|---|---|---|")
    for c in checks:
        w("| %s | %s | %s | %s |" % c)
    w("")
    w("### Machine")
    w("")
    with open(machine) as f:
        w(f.read().rstrip("\n"))
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "wan":
        wan_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "scale":
        scale_main(sys.argv[2:])
    else:
        main()
