"""`bench/run homestead`: the Homestead HTTP API under wrk. See bench/README.md.

  bench/run homestead [--subscribers 100000] [--duration 20] [--connections 32]
                      [--no-build] [--homestead-core 1] [--load-core 0]

Starts `whitewater homestead` (embedded store, fresh data directory) pinned to one core,
provisions numbered subscribers with `whitewater provision` (then again: the idempotent
re-run), and drives two Homestead requests with wrk pinned to another core:

- digest: GET /impi/<n>@example.com/av/digest?impu=sip:<n>@example.com
- reg-data: PUT /impu/sip:<n>@example.com/reg-data?private_id=<n>@example.com, reqtype reg

each request going to the next subscriber in turn. Reports throughput, wrk's p50/p99 and
Homestead's CPU time per subscriber and per request in bench/results/<date>-homestead.md.

Called by bench/run, which passes itself as `run` for its helpers (log, die, start, stop_all,
cpu_seconds, core_busy, affinity_problems, free_ports, apt_ensure, host_meta, capture): every
process started goes through run.start, so bench/run's signal handling stops it by its pid.
Python 3 standard library only.
"""

import json
import os
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
WW_BIN = ROOT / "target" / "release" / "whitewater"
LOOPBACK = "127.0.0.1"
FIRST_NUMBER = 2010000000
DOMAIN = "example.com"
PASSWORD = "homestead-bench-7kkz"
SERVER_NAME = "sip:scscf.example.com"
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no http_proxy
NOISY_PCT = 10.0  # other load on a benchmark core above this marks a figure noisy

# The two requests: method, path and body for subscriber n (Lua expressions over `n`, a
# string), and a short description for the report.
REQUESTS = {
    "digest": {
        "method": "GET",
        "path": '"/impi/" .. n .. "%40' + DOMAIN + '/av/digest?impu=sip%3A" .. n .. "%40'
                + DOMAIN + '"',
        "body": None,
        "shown": f"GET /impi/N%40{DOMAIN}/av/digest?impu=sip%3AN%40{DOMAIN}",
    },
    "reg-data": {
        "method": "PUT",
        "path": '"/impu/sip%3A" .. n .. "%40' + DOMAIN + '/reg-data?private_id=" .. n .. "%40'
                + DOMAIN + '"',
        "body": json.dumps({"reqtype": "reg", "server_name": SERVER_NAME}),
        "shown": f"PUT /impu/sip%3AN%40{DOMAIN}/reg-data?private_id=N%40{DOMAIN} "
                 f'{{"reqtype":"reg","server_name":"{SERVER_NAME}"}}',
    },
}

LUA = """\
-- bench/run homestead, {name}: written by bench/homestead_bench.py. Request k goes to
-- subscriber first + (k % count), so every request hits a different subscriber in turn.
first = {first}
count = {count}
counter = 0
errors = 0    -- responses outside 2xx (a thread's global: done() reads it with thread:get)
last_bad = 0  -- the status of the latest of them
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function request()
  local n = string.format("%d", first + (counter % count))
  counter = counter + 1
  return wrk.format("{method}", {path}, {headers}, {body})
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    errors = errors + 1
    last_bad = status
  end
end

function done(summary, latency, requests)
  local total, last = 0, 0
  for _, t in ipairs(threads) do
    total = total + t:get("errors")
    if t:get("last_bad") ~= 0 then last = t:get("last_bad") end
  end
  io.write(string.format("homestead-bench non-2xx: %d last: %d\\n", total, last))
end
"""


def add_arguments(p):
    p.add_argument("--subscribers", type=int, default=100000,
                   help=f"subscribers provisioned, numbered from {FIRST_NUMBER} (default 100000)")
    p.add_argument("--duration", type=float, default=20, help="seconds of wrk per request (default 20)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--homestead-core", type=int, default=1, help="core Homestead is pinned to (default 1)")
    p.add_argument("--load-core", type=int, default=0,
                   help="core wrk and the provisioning CLI are pinned to (default 0)")
    p.add_argument("--no-build", action="store_true", help="use target/release/whitewater as built")


def check_arguments(ap, args):
    if args.subscribers < 1:
        ap.error("--subscribers must be at least 1")
    if args.duration < 1 or args.duration != int(args.duration):
        ap.error("--duration must be a whole number of seconds, at least 1")
    if args.connections < 1:
        ap.error("--connections must be at least 1")
    if args.homestead_core == args.load_core:
        ap.error("--homestead-core and --load-core must differ")
    for c in (args.homestead_core, args.load_core):
        if c < 0 or c >= os.cpu_count():
            ap.error(f"core {c} does not exist ({os.cpu_count()} cpus)")


# ---------------------------------------------------------------- steps


def build(args, run):
    if not args.no_build:
        run.log("building whitewater (cargo build --release)")
        r = subprocess.run(["nice", "-n", "19", "cargo", "build", "--release", "--quiet",
                            "--bin", "whitewater"], cwd=ROOT)
        if r.returncode != 0:
            run.die("building whitewater failed")
    if not WW_BIN.exists():
        run.die(f"{WW_BIN.relative_to(ROOT)} missing (drop --no-build)")
    for sub in ("homestead", "provision"):
        r = subprocess.run([str(WW_BIN), sub, "--help"], capture_output=True, text=True)
        if r.returncode != 0:
            run.die(f"{WW_BIN.relative_to(ROOT)} has no `{sub}` subcommand")


def clean_environment(run):
    """Only the command line configures the processes started: drop inherited WW_*
    variables (WW_SCYLLA_NODES would move the store elsewhere), and log warnings only."""
    dropped = sorted(k for k in os.environ if k.startswith("WW_"))
    for k in dropped:
        del os.environ[k]
    if dropped:
        run.log(f"ignoring {' '.join(dropped)} from the environment")
    os.environ["WW_LOG"] = "warn"
    for k in ("NO_PROXY", "no_proxy"):  # the provisioning CLI talks to loopback directly
        os.environ[k] = ",".join(x for x in (os.environ.get(k), LOOPBACK, "localhost") if x)


def tail(path, n=2000):
    try:
        return Path(path).read_text(errors="replace")[-n:]
    except OSError:
        return ""


def wait_ping(run, hs, rawdir, port, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hs.poll() is not None:
            run.die(f"homestead exited with {hs.returncode} before answering /ping on {what} "
                    f"{port}:\n{tail(rawdir / 'homestead.log')}")
        try:
            with DIRECT.open(f"http://{LOOPBACK}:{port}/ping", timeout=1.0) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    run.die(f"homestead did not answer GET /ping on {what} {port} within {timeout:g} s "
            f"(see {(rawdir / 'homestead.log').relative_to(ROOT)})")


class Window:
    """Homestead's CPU time, both cores' busy time and this process's children's CPU time
    (the load generator, once reaped) over one measurement."""

    def __init__(self, run, hs, args):
        self.run, self.hs, self.args = run, hs, args
        self.ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.busy0 = (run.core_busy(args.homestead_core), run.core_busy(args.load_core))
        self.cpu0, self.t0 = run.cpu_seconds(hs.pid), time.monotonic()

    def close(self):
        """Call after the load generator was reaped and Homestead checked alive (a dead
        process has no CPU time left to read)."""
        run, args = self.run, self.args
        cpu1, t1 = run.cpu_seconds(self.hs.pid), time.monotonic()
        busy1 = (run.core_busy(args.homestead_core), run.core_busy(args.load_core))
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall, cpu = t1 - self.t0, cpu1 - self.cpu0
        gen = (ru1.ru_utime - self.ru0.ru_utime) + (ru1.ru_stime - self.ru0.ru_stime)
        return {
            "wall_s": wall, "homestead_cpu_s": cpu, "load_cpu_s": gen,
            "homestead_core_pct": 100.0 * cpu / wall,
            "load_core_pct": 100.0 * gen / wall,
            # whatever else ran on the two cores meanwhile (a build, another VM's steal)
            "other_on_homestead_core_pct":
                max(0.0, 100.0 * (busy1[0] - self.busy0[0] - cpu) / wall),
            "other_on_load_core_pct": max(0.0, 100.0 * (busy1[1] - self.busy0[1] - gen) / wall),
        }


def check_alive(run, hs, rawdir, during):
    if hs.poll() is not None:
        run.die(f"homestead exited with {hs.returncode} during {during}:\n"
                f"{tail(rawdir / 'homestead.log')}")


def provision(run, args, hs, rawdir, slug, label, prov_port, pwfile):
    last = FIRST_NUMBER + args.subscribers - 1
    cmd = [WW_BIN, "provision", "--numbers", f"{FIRST_NUMBER}-{last}", "--domain", DOMAIN,
           "--password-file", pwfile, "--server", f"http://{LOOPBACK}:{prov_port}"]
    out = f"provision-{slug}.out"
    run.log(f"provisioning, {label}: {args.subscribers} subscribers")
    w = Window(run, hs, args)
    p = run.start(cmd, rawdir, out, args.load_core)
    rc = p.wait()
    run.STARTED.remove(p)
    check_alive(run, hs, rawdir, f"provisioning, {label}")
    r = w.close()
    if rc != 0:
        run.die(f"`{p.cmdline}` exited with {rc}:\n{tail(rawdir / out)}")
    r.update({
        "label": label, "subscribers": args.subscribers, "command": shown_command(cmd),
        "subscribers_per_s": args.subscribers / r["wall_s"],
        "cpu_us_per_subscriber": r["homestead_cpu_s"] * 1e6 / args.subscribers,
    })
    run.log(f"  {r['subscribers_per_s']:.0f} subscribers/s, Homestead "
            f"{r['cpu_us_per_subscriber']:.1f} CPU µs/subscriber "
            f"(core {r['homestead_core_pct']:.0f}%, CLI core {r['load_core_pct']:.0f}%)")
    return r


def shown_command(cmd):
    text = " ".join(map(str, cmd))
    return text.replace(str(ROOT) + "/", "")


def lua_script(name, count):
    spec = REQUESTS[name]
    body = spec["body"]
    return LUA.format(
        name=name, first=FIRST_NUMBER, count=count, method=spec["method"], path=spec["path"],
        headers='{["Content-Type"] = "application/json"}' if body else "nil",
        body="'" + body + "'" if body else "nil")


LATENCY_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def wrk_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    return float(m.group(1)) * LATENCY_UNITS[m.group(2)] if m else None


def parse_wrk(text):
    """The figures of `wrk --latency` output, plus the script's count of non-2xx."""
    out = {"requests": None, "requests_per_s": None, "p50_ms": None, "p75_ms": None,
           "p90_ms": None, "p99_ms": None, "socket_errors": 0, "wrk_non_2xx_3xx": 0,
           "non_2xx": None, "last_bad_status": None}
    for line in text.splitlines():
        s = line.strip()
        m = re.fullmatch(r"(50|75|90|99)(?:\.000)?%\s+(\S+)", s)
        if m:
            out[f"p{m.group(1)}_ms"] = wrk_ms(m.group(2))
        elif m := re.match(r"(\d+) requests in ", s):
            out["requests"] = int(m.group(1))
        elif m := re.match(r"Requests/sec:\s+([\d.]+)", s):
            out["requests_per_s"] = float(m.group(1))
        elif s.startswith("Socket errors:"):
            out["socket_errors"] = sum(int(x) for x in re.findall(r"\d+", s))
        elif m := re.match(r"Non-2xx or 3xx responses:\s+(\d+)", s):
            out["wrk_non_2xx_3xx"] = int(m.group(1))
        elif m := re.match(r"homestead-bench non-2xx: (\d+) last: (\d+)", s):
            out["non_2xx"], out["last_bad_status"] = int(m.group(1)), int(m.group(2)) or None
    return out


def load(run, args, hs, rawdir, name, http_port):
    script = rawdir / f"{name}.lua"
    script.write_text(lua_script(name, args.subscribers))
    cmd = ["wrk", "--latency", "-t1", f"-c{args.connections}", f"-d{int(args.duration)}s",
           "-s", script, f"http://{LOOPBACK}:{http_port}"]
    out = f"wrk-{name}.out"
    run.log(f"wrk {name}: {args.connections} connections, {int(args.duration)} s")
    w = Window(run, hs, args)
    p = run.start(cmd, rawdir, out, args.load_core)
    try:
        rc = p.wait(args.duration + 60)
    except subprocess.TimeoutExpired:
        run.die(f"wrk ({name}) still running {args.duration + 60:g} s after it started")
    run.STARTED.remove(p)
    check_alive(run, hs, rawdir, f"wrk ({name})")
    r = w.close()
    r.update(parse_wrk((rawdir / out).read_text(errors="replace")))
    r.update({"name": name, "wrk_rc": rc, "shown": REQUESTS[name]["shown"],
              "command": shown_command(cmd).replace(str(rawdir.relative_to(ROOT)) + "/", "")})
    if r["requests"] is None or r["requests_per_s"] is None or r["non_2xx"] is None:
        run.die(f"cannot read wrk's figures from {(rawdir / out).relative_to(ROOT)} "
                f"(exit {rc}):\n{tail(rawdir / out)}")
    n, cpu = r["requests"], r["homestead_cpu_s"]
    r["requests_per_cpu_s"] = n / cpu if cpu > 0 else None
    r["cpu_us_per_request"] = cpu * 1e6 / n if n else None
    r["errors"] = r["non_2xx"] + r["socket_errors"] + (1 if rc != 0 else 0)
    r["clean"] = r["errors"] == 0 and n > 0
    run.log(f"  {r['requests_per_s']:.0f} requests/s, p50 {ms(r['p50_ms'])} p99 "
            f"{ms(r['p99_ms'])} ms, {fmt(r['cpu_us_per_request'])} CPU µs/request "
            f"(Homestead core {r['homestead_core_pct']:.0f}%, wrk core "
            f"{r['load_core_pct']:.0f}%), non-2xx {r['non_2xx']}, socket errors "
            f"{r['socket_errors']}{'' if r['clean'] else '  ERRORS'}")
    return r


# ---------------------------------------------------------------- report


def fmt(v, spec=".1f", none="–"):
    return none if v is None else format(v, spec)


def ms(v):
    return "–" if v is None else f"{v:.3g}" if v < 10 else f"{v:.0f}"


def other(r):
    a, b = r["other_on_homestead_core_pct"], r["other_on_load_core_pct"]
    return f"{a:.0f} / {b:.0f}{' noisy' if max(a, b) > NOISY_PCT else ''}"


def write_report(args, meta, provs, loads, warnings, rawdir):
    """bench/results/<date>-homestead.md (-2, -3... when that day's exists)."""
    RESULTS.mkdir(exist_ok=True)
    day = time.strftime("%Y-%m-%d")
    stem, n = f"{day}-homestead", 1
    while (RESULTS / f"{stem}.md").exists():
        n += 1
        stem = f"{day}-homestead-{n}"
    md = RESULTS / f"{stem}.md"
    L = [f"# Homestead benchmark, {day}", ""]
    L += [f"Command: `{meta['command']}`", ""]
    L += [f"- {k}: {v}" for k, v in meta.items() if k not in ("command", "Homestead")]
    L += ["", "wrk and Homestead shared the machine, each pinned with `taskset` to its own core "
          "(the provisioning CLI ran on wrk's core). Both cores are the same machine's: compare "
          "figures within a run, or across runs on the same machine, not absolute µs across "
          "machines.", ""]

    L += ["## Bulk provisioning", ""]
    L += ["`whitewater provision` over the provisioning API (one `PUT /subscribers/<impi>` per "
          "subscriber, 64 in flight), timed from start to exit. CPU µs/subscriber = Homestead's "
          "utime+stime (/proc, all threads) over that time, per subscriber. The re-run sends the "
          "same subscribers again: every one is unchanged. Core %: CPU time over the wall time; "
          f"other load %: what else ran on Homestead's / the CLI's core (/proc/stat); above "
          f"{NOISY_PCT:g}% marked noisy.", ""]
    L += ["| run | subscribers | seconds | subscribers/s | Homestead CPU s | CPU µs/subscriber "
          "| Homestead core % | CLI core % | other load % |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in provs:
        L.append(f"| {r['label']} | {r['subscribers']} | {r['wall_s']:.2f} "
                 f"| {r['subscribers_per_s']:.0f} | {r['homestead_cpu_s']:.2f} "
                 f"| {r['cpu_us_per_subscriber']:.1f} | {r['homestead_core_pct']:.0f} "
                 f"| {r['load_core_pct']:.0f} | {other(r)} |")

    L += ["", f"## Homestead API under wrk ({args.connections} connections, "
          f"{int(args.duration)} s each)", ""]
    L += ["wrk is closed-loop: each connection sends its next request when the previous "
          "answer arrives, so the rate is the most Homestead (or wrk) delivers and the "
          "latencies are under that load. Request k goes to subscriber "
          f"{FIRST_NUMBER} + (k mod {args.subscribers}). Requests/CPU-s (per core) and CPU "
          "µs/request: the requests wrk completed over Homestead's CPU time during the run. "
          "p50/p99: wrk's latency distribution (`--latency`). Non-2xx: counted by the "
          "script's `response()` hook; socket errors: wrk's connect/read/write/timeout.", ""]
    L += ["| request | requests | requests/s | p50 ms | p99 ms | requests/CPU-s "
          "| CPU µs/request | Homestead core % | wrk core % | other load % | non-2xx "
          "| socket errors | clean |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in loads:
        L.append(f"| {r['name']} | {r['requests']} | {r['requests_per_s']:.0f} "
                 f"| {ms(r['p50_ms'])} | {ms(r['p99_ms'])} | {fmt(r['requests_per_cpu_s'], '.0f')} "
                 f"| {fmt(r['cpu_us_per_request'])} | {r['homestead_core_pct']:.0f} "
                 f"| {r['load_core_pct']:.0f} | {other(r)} | {r['non_2xx']} "
                 f"| {r['socket_errors']} | {'yes' if r['clean'] else '**NO: errors**'} |")
    L += ["", "Requests:", ""]
    L += [f"- {r['name']}: `{r['shown']}` (N = each subscriber in turn)" for r in loads]

    L += ["", "## Commands", ""]
    L += [f"- Homestead: `{meta['Homestead']}`"]
    L += [f"- provisioning, {r['label']}: `{r['command']}`" for r in provs]
    L += [f"- {r['name']}: `{r['command']}` (script `{r['name']}.lua` in the raw directory)"
          for r in loads]
    if warnings:
        L += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    L += ["", f"Raw output (wrk, the Lua scripts, Homestead's log, results.json): "
          f"`bench/results/raw/{rawdir.name}/` (not committed).", ""]
    md.write_text("\n".join(L))
    return md


def warnings_of(provs, loads, pinning, core):
    out = []
    for r in loads:
        if not r["clean"]:
            latest = r["last_bad_status"]
            out.append(f"{r['name']}: ERRORS: {r['non_2xx']} non-2xx responses"
                       f"{'' if latest is None else f' (latest status {latest})'}, "
                       f"{r['socket_errors']} socket errors, wrk exit {r['wrk_rc']}")
    for r in provs + loads:
        a, b = r["other_on_homestead_core_pct"], r["other_on_load_core_pct"]
        if max(a, b) > NOISY_PCT:
            out.append(f"{r.get('label') or r.get('name')}: other load {a:.0f}% on Homestead's "
                       f"core, {b:.0f}% on the load core: noisy")
    if pinning:
        out.append(f"Homestead threads not pinned to core {core}: {'; '.join(pinning[:3])}")
    return out


# ---------------------------------------------------------------- main


def main(args, argv, run):
    run.apt_ensure({"wrk": "wrk", "taskset": "util-linux"})
    build(args, run)
    clean_environment(run)
    meta = {"command": "bench/run " + " ".join(argv), **run.host_meta()}
    meta["pinning"] = (f"Homestead on core {args.homestead_core}, wrk and the provisioning "
                       f"CLI on core {args.load_core} (taskset)")
    meta["wrk"] = (run.capture(["wrk", "-v"]).splitlines() or ["?"])[0].split(" Copyright")[0]
    meta["store"] = "embedded (redb), fresh data directory, WW_LOG=warn, default cache (30 s TTL)"
    meta["subscribers"] = (f"{args.subscribers}: {FIRST_NUMBER}@{DOMAIN} to "
                           f"{FIRST_NUMBER + args.subscribers - 1}@{DOMAIN}, one public "
                           "identity each, digest password")
    meta["load average at start"] = open("/proc/loadavg").read().split()[0]

    stamp = time.strftime("%Y%m%d-%H%M%S")
    rawdir = RESULTS / "raw" / f"{stamp}-homestead"
    rawdir.mkdir(parents=True)
    datadir = Path(tempfile.mkdtemp(prefix="ww-homestead-bench-"))
    pwfile = rawdir / "password"
    pwfile.write_text(PASSWORD + "\n")
    http_port, prov_port = run.free_ports([1, 1], socket.SOCK_STREAM)
    run.log(f"raw output in {rawdir.relative_to(ROOT)}; data in {datadir}; "
            f"ports {http_port} (homestead), {prov_port} (prov)")

    hs_cmd = [WW_BIN, "homestead", "--data-dir", datadir, "--homestead-http",
              f"{LOOPBACK}:{http_port}", "--prov-http", f"{LOOPBACK}:{prov_port}"]
    meta["Homestead"] = f"WW_LOG=warn taskset -c {args.homestead_core} {shown_command(hs_cmd)}"
    provs, loads, pinning, store_bytes = [], [], [], None
    try:
        hs = run.start(hs_cmd, rawdir, "homestead.log", args.homestead_core)
        wait_ping(run, hs, rawdir, http_port, "the Homestead API port")
        wait_ping(run, hs, rawdir, prov_port, "the provisioning API port")
        pinning = run.affinity_problems(hs.pid, args.homestead_core)
        provs.append(provision(run, args, hs, rawdir, "first", "first", prov_port, pwfile))
        provs.append(provision(run, args, hs, rawdir, "rerun", "re-run, all unchanged",
                               prov_port, pwfile))
        for name in REQUESTS:
            time.sleep(1.0)
            loads.append(load(run, args, hs, rawdir, name, http_port))
        pinning += run.affinity_problems(hs.pid, args.homestead_core)
        store_bytes = sum(f.stat().st_size for f in datadir.rglob("*") if f.is_file())
    finally:
        run.stop_all()
        shutil.rmtree(datadir, ignore_errors=True)
    meta["store size after the run"] = f"{store_bytes / 1e6:.1f} MB" if store_bytes else "?"
    meta["load average at end"] = open("/proc/loadavg").read().split()[0]
    warnings = warnings_of(provs, loads, sorted(set(pinning)), args.homestead_core)
    (rawdir / "results.json").write_text(json.dumps(
        {"args": vars(args), "meta": meta, "provisioning": provs, "wrk": loads,
         "warnings": warnings}, indent=1, default=str))
    md = write_report(args, meta, provs, loads, warnings, rawdir)
    run.log(f"report: {md.relative_to(ROOT)}")
    print(md.read_text())
    return 1 if any(not r["clean"] for r in loads) else 0
