"""`bench/run overload`: goodput against offered load past capacity, Whitewater against
Kamailio under the same CPU quota, in one run. See bench/README.md.

The server under test is pinned to one core and held to a fraction of it by a CPU cgroup
(v1 `cpu.cfs_quota_us`, or v2 `cpu.max`), so that its capacity is far below what SIPp on the
other core can offer: SIPp then drives it to several times its capacity. Goodput = calls
(or registrations) that completed successfully while the load was offered, per second of
it; failed calls (503s, time-outs) do not count, nor do calls that only completed after the
load stopped (a backlog drained, or SIPp's retransmissions let in late: reported apart). A server holds up under overload when its goodput at twice
and four times its capacity stays near its best.

Two loads:
- `invite`: `sipp-scenarios/proxy-uac.xml` calls through the plain proxy (Whitewater
  `sprout`, Kamailio `bench/kamailio/kamailio.cfg`), to a SIPp UAS outside the quota.
- `register`: `sipp-scenarios/register-noauth.xml` registrations of distinct subscribers on
  the S-CSCF (Whitewater `all-in-one`, Homestead in process, everything under the quota;
  Kamailio `bench/kamailio/registrar.cfg`).
"""

import json
import os
import time
from pathlib import Path

SERVERS = ("whitewater", "kamailio")
LOADS = ("invite", "register")
CGROUP_V1 = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup")
GROUP = "whitewater-bench-overload"
PERIOD_US = 10_000


def add_arguments(p):
    p.add_argument("--load", choices=LOADS, default="invite",
                   help="invite: calls through the proxy; register: registrations on the "
                        "S-CSCF (default invite)")
    p.add_argument("--servers", default=",".join(SERVERS),
                   help="comma list from whitewater,kamailio (default both)")
    p.add_argument("--quota-pct", type=float, default=10,
                   help="CPU the server may use, %% of one core (default 10: a period of "
                        f"{PERIOD_US} µs, a quota of 1000 µs)")
    p.add_argument("--rates", default=None,
                   help="offered rates, per second (default: invite 500,1000,1500,2000,3000,"
                        "4000,6000,8000; register 250,500,1000,1500,2000,3000,4000)")
    p.add_argument("--duration", type=float, default=20, help="seconds per rate (default 20)")
    p.add_argument("--subscribers", type=int, default=200_000,
                   help="register load: distinct subscribers provisioned (default 200000)")
    p.add_argument("--proxy-core", type=int, default=1)
    p.add_argument("--sipp-core", type=int, default=0)
    p.add_argument("--sockbuf", type=int, default=8 << 20,
                   help="socket buffers SIPp and Kamailio ask for (default 8 MiB); Whitewater "
                        "uses its own default unless --whitewater-args says otherwise")
    p.add_argument("--whitewater-args", default="",
                   help="extra arguments for whitewater (e.g. '--socket-buffer 8388608')")
    p.add_argument("--grace", type=float, default=40,
                   help="seconds SIPp may run past the offered load before it is stopped "
                        "(default 40: a call that takes longer has failed anyway)")
    p.add_argument("--no-build", action="store_true", help="use target/release/whitewater as built")


def check_arguments(ap, args):
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    bad = [s for s in args.servers if s not in SERVERS]
    if bad or not args.servers:
        ap.error(f"--servers: unknown {bad}; choose from {','.join(SERVERS)}")
    if args.rates is None:
        args.rates = ("500,1000,1500,2000,3000,4000,6000,8000" if args.load == "invite"
                      else "250,500,1000,1500,2000,3000,4000")
    args.rates = [int(x) for x in args.rates.split(",") if x.strip()]
    if not args.rates or min(args.rates) < 1:
        ap.error("--rates: positive integers")
    if not 0 < args.quota_pct <= 100:
        ap.error("--quota-pct: above 0, at most 100")
    if args.proxy_core == args.sipp_core:
        ap.error("--proxy-core and --sipp-core must differ")


# ---------------------------------------------------------------- the CPU quota


class Quota:
    """A CPU cgroup holding whatever joins it to quota_pct of one core."""

    def __init__(self, run, quota_pct):
        quota = max(1000, int(PERIOD_US * quota_pct / 100))
        self.run = run
        if (CGROUP_V1 / "cpu.cfs_quota_us").exists():
            self.path = CGROUP_V1 / GROUP
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        elif (CGROUP_V2 / "cgroup.controllers").exists():
            if "cpu" not in (CGROUP_V2 / "cgroup.subtree_control").read_text().split():
                (CGROUP_V2 / "cgroup.subtree_control").write_text("+cpu")
            self.path = CGROUP_V2 / GROUP
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        else:
            run.die("no CPU cgroup controller (v1 cpu or v2 cpu.max) to hold the server to a quota")
        self.description = f"{quota} µs of CPU per {PERIOD_US} µs ({100 * quota / PERIOD_US:g} % of a core)"

    def wrap(self, cmd):
        """cmd, made to join the group before it execs (its children inherit it)."""
        procs = self.path / "cgroup.procs"
        return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh", *map(str, cmd)]

    def throttled(self):
        """Periods in which the group ran out of quota, so far."""
        try:
            for line in (self.path / "cpu.stat").read_text().splitlines():
                if line.startswith("nr_throttled"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def remove(self):
        try:
            self.path.rmdir()
        except OSError:
            pass


# ---------------------------------------------------------------- servers


class Server:
    """The server under test, its processes inside the quota."""

    def __init__(self, run, args, quota, name, cwd, ports):
        self.run, self.procs = run, []
        core = args.proxy_core
        port = ports["server"]
        addr = f"{run.LOOPBACK}:{port}"
        if name == "kamailio":
            cfg = "kamailio.cfg" if args.load == "invite" else "registrar.cfg"
            defines = ["-A", f"SOCKBUF={args.sockbuf}"] if args.load == "invite" else []
            cmd = [run.kamailio_bin(), "-DD", "-E", "-x", "fm", "-m", "4096", "-M", "16",
                   "-f", run.BENCH / "kamailio" / cfg, *defines, "-l", f"udp:{addr}",
                   "-Y", cwd, "-P", cwd / "kamailio.pid", "-w", cwd]
            self.procs.append(run.start(quota.wrap(cmd), cwd, "server.log", core))
            run.wait_bound(self.procs[0], port, name, cwd, "server.log")
            time.sleep(1.0)
            return
        extra = args.whitewater_args.split()
        metrics = f"{run.LOOPBACK}:{ports['metrics']}"
        if args.load == "invite":
            cmd = [run.WW_BIN, "sprout", "--listen", addr, "--cores", core, "--metrics", metrics,
                   *extra]
        else:
            http, prov, mgmt = run.free_ports([1] * 3, run.socket.SOCK_STREAM)
            cmd = [run.WW_BIN, "all-in-one", "--listen", addr, "--cores", core,
                   "--metrics", metrics, "--homestead-http", f"{run.LOOPBACK}:{http}",
                   "--prov-http", f"{run.LOOPBACK}:{prov}",
                   "--management-http", f"{run.LOOPBACK}:{mgmt}", "--data-dir", cwd / "data",
                   "--demo-subscribers", args.subscribers, "--no-register-authentication", *extra]
        ww = run.start(quota.wrap(cmd), cwd, "server.log", core)
        self.procs.append(ww)
        run.wait_bound(ww, port, name, cwd, "server.log", timeout=60.0)
        if args.load == "register":
            self.wait_provisioned(args, cwd, http)

    def wait_provisioned(self, args, cwd, http):
        from register_bench import FIRST_NUMBER, http_ok
        last = FIRST_NUMBER + args.subscribers - 1
        url = (f"http://{self.run.LOOPBACK}:{http}/impi/{last}%40example.com/av/digest"
               f"?impu=sip%3A{last}%40example.com")
        deadline = time.monotonic() + 300
        while not http_ok(url):
            if not self.alive() or time.monotonic() > deadline:
                self.run.die(f"demo subscribers never appeared (see {cwd}/server.log)")
            time.sleep(0.5)

    def cpu(self):
        return sum(self.run.cpu_seconds(p.pid) for p in self.procs)

    def rss_mb(self):
        total = 0
        for p in self.procs:
            for pid in self.run.tree_pids(p.pid):
                try:
                    for line in open(f"/proc/{pid}/status"):
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
                except OSError:
                    pass
        return total / 1024

    def alive(self):
        return all(p.poll() is None for p in self.procs)

    def stop(self):
        for p in self.procs:
            self.run.stop(p)


def whitewater_metrics(run, port):
    """Whitewater's metrics as {name: value}, counters summed over labels."""
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{run.LOOPBACK}:{port}/metrics", timeout=2.0) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        name = name.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            pass
    return out


# What the controller did, sampled during a run (timeline.csv in the raw directory).
TIMELINE = ("ww_overload_admission_rate", "ww_sip_overload_rejections_total",
            "ww_sip_overload_drops_total", "ww_sip_requests_in_total")


def write_timeline(path, rows):
    lines = ["seconds;" + ";".join(TIMELINE)]
    lines += [";".join(f"{v:.2f}" if i == 0 else f"{v:.0f}" for i, v in enumerate(r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- one measurement


def measure(run, args, quota, name, rate, label, rawdir):
    cwd = rawdir / label
    cwd.mkdir(parents=True)
    count = int(round(rate * args.duration))
    run.log(f"{label}: {name}, {args.load} at {rate}/s for {args.duration:g} s ({count})")
    ports = dict(zip(("server", "uas", "uac"), run.free_ports([args.proxy_core + 2, 1, 1])))
    ports["metrics"] = run.free_ports([1], run.socket.SOCK_STREAM)[0]
    server = Server(run, args, quota, name, cwd, ports)
    uas = None
    try:
        if args.load == "invite":
            uas = run.start(["sipp", "-sf", run.UAS_XML, "-i", run.LOOPBACK, "-p", ports["uas"],
                             "-nostdin", "-buff_size", args.sockbuf, "-trace_stat", "-stf",
                             "uas_stat.csv", "-fd", "1"], cwd, "uas.out", args.sipp_core)
            run.wait_bound(uas, ports["uas"], "SIPp UAS", cwd, "uas.out")
            uac = ["sipp", f"{run.LOOPBACK}:{ports['server']}", "-sf", run.UAC_XML,
                   "-key", "uas_host", run.LOOPBACK, "-key", "uas_port", ports["uas"], "-s", "bench",
                   "-d", 100]
        else:
            users = cwd / "users.csv"
            from register_bench import write_users
            write_users(users, min(count, args.subscribers))
            uac = ["sipp", f"{run.LOOPBACK}:{ports['server']}", "-sf",
                   run.SCENARIOS / "register-noauth.xml", "-inf", users]
        uac += ["-i", run.LOOPBACK, "-p", ports["uac"], "-r", rate, "-rp", "1000", "-m", count,
                "-l", rate * 40, "-recv_timeout", "10000",
                "-timeout", f"{args.duration + args.grace:.0f}s", "-timeout_error",
                "-buff_size", args.sockbuf, "-nostdin", "-trace_stat", "-stf", "uac_stat.csv",
                "-fd", "1"]
        before = whitewater_metrics(run, ports["metrics"]) if name == "whitewater" else {}
        throttled0, cpu0, t0 = quota.throttled(), server.cpu(), time.monotonic()
        rss_peak = 0.0
        timeline = []
        p = run.start(uac, cwd, "uac.out", args.sipp_core)
        while p.poll() is None:
            rss_peak = max(rss_peak, server.rss_mb())
            if name == "whitewater":
                m = whitewater_metrics(run, ports["metrics"])
                timeline.append((time.monotonic() - t0, *(m.get(k, 0.0) for k in TIMELINE)))
            time.sleep(0.25)
        write_timeline(cwd / "timeline.csv", timeline)
        run.STARTED.remove(p)
        wall = time.monotonic() - t0
        alive = server.alive()
        cpu1, throttled1 = server.cpu(), quota.throttled()
        after = whitewater_metrics(run, ports["metrics"]) if name == "whitewater" else {}
    finally:
        if uas is not None:
            run.stop(uas)
        server.stop()
    for f in ("uac.out", "uas.out", "server.log"):
        run.cap_file(cwd / f)
    stats = run.parse_stat_csv(cwd / "uac_stat.csv")
    ok, failed = run.counter(stats, "SuccessfulCall"), run.counter(stats, "FailedCall")
    ok_during = successes_by(cwd / "uac_stat.csv", args.duration)

    def delta(metric):
        return after.get(metric, 0.0) - before.get(metric, 0.0) if after else None

    r = {
        "label": label, "server": name, "load": args.load, "rate": rate, "offered": count,
        "ok": ok, "ok_during": ok_during, "failed": failed,
        "retrans": run.counter(stats, "Retransmissions"), "goodput": ok_during / args.duration, "wall_s": wall, "cpu_s": cpu1 - cpu0,
        "throttled_periods": throttled1 - throttled0, "rss_peak_mb": rss_peak, "alive": alive,
        "rejected_503": delta("ww_sip_overload_rejections_total"),
        "shed_stale": delta("ww_sip_overload_drops_total"),
    }
    shed = "" if r["rejected_503"] is None else (
        f", 503 {r['rejected_503']:.0f}, dropped stale {r['shed_stale'] or 0:.0f}")
    run.log(f"  ok {ok}/{count} ({ok_during} during the load) failed {failed} retrans {r['retrans']}: goodput "
            f"{r['goodput']:.0f}/s; CPU {r['cpu_s']:.1f} s in {wall:.0f} s, RSS peak "
            f"{rss_peak:.0f} MB{shed}{'' if alive else '; SERVER DIED'}")
    (cwd / "result.json").write_text(json.dumps(r, indent=1))
    time.sleep(1.0)
    return r


def successes_by(path, seconds):
    """SuccessfulCall(C) in the last line of SIPp's periodic statistics (-fd 1) written by
    `seconds` (plus half a period) into the run."""
    try:
        lines = [l for l in Path(path).read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return 0
    if len(lines) < 2:
        return 0
    head = lines[0].split(";")
    start, now = head.index("StartTime"), head.index("CurrentTime")
    col = head.index("SuccessfulCall(C)")

    def epoch(cell):  # "date<TAB>time<TAB>seconds since the epoch"
        return float(cell.split("\t")[-1])

    count = 0
    for line in lines[1:]:
        cells = line.split(";")
        if epoch(cells[now]) - epoch(cells[start]) <= seconds + 0.5:
            count = int(cells[col])
    return count


# ---------------------------------------------------------------- report


def summary(results, server):
    """(capacity, best goodput, [(rate, multiple, goodput, ratio to best)]) for one server;
    capacity = the highest offered rate at which 99 % of the calls completed."""
    mine = sorted((r for r in results if r["server"] == server), key=lambda r: r["rate"])
    if not mine:
        return None, 0.0, []
    best = max(r["goodput"] for r in mine)
    clean = [r["rate"] for r in mine if r["ok"] >= 0.99 * r["offered"]]
    capacity = max(clean) if clean else None
    rows = [(r["rate"], r["rate"] / capacity if capacity else None, r["goodput"],
             r["goodput"] / best if best else 0.0) for r in mine]
    return capacity, best, rows


def verdicts(results, server):
    """Goodput relative to the best at the offered rates closest to 2× and 4× capacity."""
    capacity, best, rows = summary(results, server)
    out = {}
    for k in (2, 4):
        near = [row for row in rows if row[1] is not None and row[1] >= k * 0.95]
        if capacity and near:
            rate, multiple, goodput, rel = min(near, key=lambda row: row[1])
            out[k] = (rate, multiple, goodput, rel)
    return capacity, best, out


def count_or_dash(v):
    return "–" if v is None else f"{v:.0f}"


def plot(results, servers, title):
    W, H, ML, MT, PW, PH = 720, 440, 70, 50, 580, 320
    colors = {"whitewater": "#1f6fb4", "kamailio": "#c8372d"}
    xmax = max(r["rate"] for r in results) * 1.05
    ymax = max([r["goodput"] for r in results] + [1]) * 1.15
    X = lambda v: ML + PW * v / xmax  # noqa: E731
    Y = lambda v: MT + PH - PH * v / ymax  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="15">{title}</text>',
           f'<rect x="{ML}" y="{MT}" width="{PW}" height="{PH}" fill="none" stroke="#333"/>',
           f'<line x1="{X(0)}" y1="{Y(0)}" x2="{X(min(xmax, ymax))}" y2="{Y(min(xmax, ymax))}" '
           'stroke="#bbb" stroke-dasharray="4,4"/>']
    for k in range(6):
        xv, yv = xmax * k / 5, ymax * k / 5
        out.append(f'<text x="{X(xv):.1f}" y="{MT + PH + 16}" text-anchor="middle">{xv:.0f}</text>')
        out.append(f'<text x="{ML - 6}" y="{Y(yv) + 4:.1f}" text-anchor="end">{yv:.0f}</text>')
        out.append(f'<line x1="{ML}" y1="{Y(yv):.1f}" x2="{ML + PW}" y2="{Y(yv):.1f}" stroke="#eee"/>')
    out.append(f'<text x="{ML + PW / 2}" y="{MT + PH + 36}" text-anchor="middle">offered per second</text>')
    out.append(f'<text x="16" y="{MT + PH / 2}" transform="rotate(-90 16 {MT + PH / 2})" '
               'text-anchor="middle">completed per second (goodput)</text>')
    for j, s in enumerate(servers):
        mine = sorted((r for r in results if r["server"] == s), key=lambda r: r["rate"])
        pts = " ".join(f"{X(r['rate']):.1f},{Y(r['goodput']):.1f}" for r in mine)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colors[s]}" stroke-width="2"/>')
        for r in mine:
            out.append(f'<circle cx="{X(r["rate"]):.1f}" cy="{Y(r["goodput"]):.1f}" r="4" '
                       f'fill="{colors[s]}"/>')
        out.append(f'<line x1="{ML + 20 + 140 * j}" y1="{MT + 14}" x2="{ML + 38 + 140 * j}" '
                   f'y2="{MT + 14}" stroke="{colors[s]}" stroke-width="3"/>')
        out.append(f'<text x="{ML + 44 + 140 * j}" y="{MT + 18}">{s}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_report(run, args, quota, results, rawdir, command):
    day = time.strftime("%Y-%m-%d")
    stem, n = f"{day}-overload-{args.load}", 1
    while (run.RESULTS / f"{stem}.md").exists():
        n += 1
        stem = f"{day}-overload-{args.load}-{n}"
    md, svg = run.RESULTS / f"{stem}.md", run.RESULTS / f"{stem}.svg"
    what = "calls" if args.load == "invite" else "registrations"
    L = [f"# Overload benchmark ({args.load}), {day}", "", f"Command: `{command}`", "",
         f"- git: {run.host_meta()['git']}; {run.host_meta()['machine']}",
         f"- server pinned to core {args.proxy_core} and held to {quota.description} by a "
         f"CPU cgroup; SIPp on core {args.sipp_core}, outside the quota",
         f"- {args.duration:g} s of offered load per rate, a fresh server each time; goodput = "
         f"{what} that completed successfully during those {args.duration:g} s, per second "
         f"(\"later\": completed after the load stopped, not counted)",
         f"- capacity = the highest offered rate at which 99 % of the {what} completed (at any time)", ""]
    L += ["| server | offered/s | × capacity | ok during / offered | later | failed | retrans | goodput/s "
          "| × best | 503 sent | stale dropped | CPU s | RSS peak MB |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in args.servers:
        capacity, best, rows = summary(results, s)
        for r in sorted((r for r in results if r["server"] == s), key=lambda r: r["rate"]):
            mult = f"{r['rate'] / capacity:.1f}" if capacity else "–"
            L.append(f"| {s} | {r['rate']} | {mult} | {r['ok_during']} / {r['offered']} "
                     f"| {r['ok'] - r['ok_during']} | {r['failed']} "
                     f"| {r['retrans']} | {r['goodput']:.0f} | {r['goodput'] / best:.2f} "
                     f"| {count_or_dash(r['rejected_503'])} | {count_or_dash(r['shed_stale'])} "
                     f"| {r['cpu_s']:.1f} | {r['rss_peak_mb']:.0f}"
                     f"{'' if r['alive'] else ' (died)'} |")
    L += ["", "## Goodput past capacity", "",
          "| server | capacity/s | best goodput/s | at ≈2× capacity | at ≈4× capacity |",
          "|---|---:|---:|---|---|"]
    for s in args.servers:
        capacity, best, v = verdicts(results, s)

        def cell(k):
            if k not in v:
                return "not offered"
            rate, mult, goodput, rel = v[k]
            return f"{goodput:.0f}/s = {rel:.2f} × best (offered {rate}/s, {mult:.1f}×)"
        L.append(f"| {s} | {capacity or '–'} | {best:.0f} | {cell(2)} | {cell(4)} |")
    L += ["", f"![goodput against offered load]({svg.name})", "",
          f"Raw output: `{rawdir.relative_to(run.ROOT)}/` (not committed).", ""]
    md.write_text("\n".join(L))
    svg.write_text(plot(results, args.servers,
                        f"Goodput against offered load ({args.load}, {quota.description})"))
    (rawdir / "results.json").write_text(json.dumps(results, indent=1))
    return md


def main(args, argv, run):
    run.ensure_packages("kamailio" in args.servers)
    if not args.no_build and "whitewater" in args.servers:
        import subprocess
        run.log("building whitewater (cargo build --release)")
        if subprocess.run(["nice", "-n", "19", "cargo", "build", "--release", "--quiet",
                           "--bin", "whitewater"], cwd=run.ROOT).returncode != 0:
            run.die("building whitewater failed")
    if os.geteuid() != 0:
        run.die("the CPU quota needs a cgroup, which needs root")
    os.environ["WW_LOG"] = "warn"
    run.raise_socket_limits(args.sockbuf)
    quota = Quota(run, args.quota_pct)
    rawdir = run.RESULTS / "raw" / f"{time.strftime('%Y%m%d-%H%M%S')}-overload"
    rawdir.mkdir(parents=True)
    results, n = [], 0
    try:
        for i, rate in enumerate(args.rates):
            for s in run.rotate(args.servers, i):
                n += 1
                results.append(measure(run, args, quota, s, rate, f"{n:03d}-{s}-{rate}", rawdir))
    finally:
        run.stop_all()
        quota.remove()
    md = write_report(run, args, quota, results, rawdir, "bench/run " + " ".join(argv))
    run.log(f"report: {md.relative_to(run.ROOT)}")
    print(md.read_text())
    return 0
