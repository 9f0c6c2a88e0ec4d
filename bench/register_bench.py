"""`bench/run register`: REGISTER throughput and CPU per registration, Whitewater's S-CSCF
against Kamailio's registrar (usrloc in memory), in one run; and the Clearwater stress
profile at a fixed subscriber count. See bench/README.md.

Every variant runs on the same pinned core (SIPp on the other), with and without digest
authentication; Whitewater with its embedded store and with a memcached server (pinned to
the same core, its CPU counted). A registration is REGISTER -> 401 -> REGISTER -> 200 with
authentication, REGISTER -> 200 without. Each variant first registers every subscriber
once (unmeasured), then the measured run refreshes them at a fixed rate.
"""

import json
import time
from pathlib import Path

VARIANTS = ("ww-auth", "ww-auth-memcached", "ww-noauth", "kamailio-auth", "kamailio-noauth")
FIRST_NUMBER = 6505550000
PASSWORD = "7kkzTyGW"


def add_arguments(p):
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma list from {','.join(VARIANTS)} (default all)")
    p.add_argument("--subscribers", type=int, default=10000,
                   help="subscribers registered and refreshed (default 10000)")
    p.add_argument("--rate", type=int, default=1000, help="registrations per second (default 1000)")
    p.add_argument("--duration", type=float, default=20, help="measured seconds (default 20)")
    p.add_argument("--proxy-core", type=int, default=1)
    p.add_argument("--sipp-core", type=int, default=0)
    p.add_argument("--drain", type=float, default=3.0,
                   help="seconds of server CPU still counted after SIPp ends (default 3)")
    p.add_argument("--stress-subscribers", type=int, default=0,
                   help="also run the Clearwater stress profile (1.3 calls and 2 re-REGISTERs "
                        "per subscriber per hour) at this many subscribers (default 0: skip)")
    p.add_argument("--calls-rate", type=int, default=0,
                   help="also measure calls to registered users (the S-CSCF's terminating "
                        "path; Kamailio: lookup() + t_relay()) at this many calls/s for "
                        "--duration, per variant (default 0: skip)")
    p.add_argument("--stress-duration", type=float, default=60,
                   help="measured seconds of the stress profile (default 60)")
    p.add_argument("--no-build", action="store_true", help="use target/release/whitewater as built")


def check_arguments(ap, args):
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad or not args.variants:
        ap.error(f"--variants: unknown {bad}; choose from {','.join(VARIANTS)}")
    if args.proxy_core == args.sipp_core:
        ap.error("--proxy-core and --sipp-core must differ")
    if args.subscribers < 1 or args.rate < 1 or args.duration < 1:
        ap.error("--subscribers, --rate and --duration must be positive")


def write_users(path, count, first=FIRST_NUMBER):
    rows = ["SEQUENTIAL"]
    for n in range(first, first + count):
        rows.append(f"{n};example.com;[authentication username={n}@example.com "
                    f"password={PASSWORD}]")
    path.write_text("\n".join(rows) + "\n")


def write_pairs(path, count, first=FIRST_NUMBER):
    rows = ["SEQUENTIAL"]
    for i in range(count):
        rows.append(f"{first + i};{first + (i + 1) % count};example.com")
    path.write_text("\n".join(rows) + "\n")


def http_ok(url):
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=1.0) as r:
            return r.status == 200
    except OSError:
        return False


class Server:
    """One registrar under test: its processes (all pinned to the proxy core) and port."""

    def __init__(self, run, args, variant, cwd, port, count):
        self.run, self.procs, self.port = run, [], port
        core = args.proxy_core
        if variant.startswith("kamailio"):
            cmd = [run.kamailio_bin(), "-DD", "-E", "-x", "fm", "-m", "1024", "-M", "16",
                   "-f", run.BENCH / "kamailio" / "registrar.cfg", "-l", f"udp:{run.LOOPBACK}:{port}",
                   "-Y", cwd, "-P", cwd / "kamailio.pid", "-w", cwd]
            if variant == "kamailio-auth":
                cmd[1:1] = ["-A", "WITH_AUTH"]
            self.procs.append(run.start(cmd, cwd, "server.log", core))
            run.wait_bound(self.procs[0], port, variant, cwd, "server.log")
            time.sleep(1.0)
            return
        http, prov, mgmt, metrics, mc = run.free_ports([1] * 5, run.socket.SOCK_STREAM)
        cmd = [run.WW_BIN, "all-in-one", "--listen", f"{run.LOOPBACK}:{port}", "--cores", core,
               "--metrics", f"{run.LOOPBACK}:{metrics}",
               "--homestead-http", f"{run.LOOPBACK}:{http}", "--prov-http", f"{run.LOOPBACK}:{prov}",
               "--management-http", f"{run.LOOPBACK}:{mgmt}", "--data-dir", cwd / "data",
               "--demo-subscribers", count]
        if variant == "ww-noauth":
            cmd.append("--no-register-authentication")
        if variant == "ww-auth-memcached":
            self.procs.append(run.start(["memcached", "-l", run.LOOPBACK, "-p", mc, "-U", "0",
                                         "-m", "256", "-u", "root"], cwd, "memcached.log", core))
            cmd += ["--memcached-servers", f"{run.LOOPBACK}:{mc}"]
        ww = run.start(cmd, cwd, "server.log", core)
        self.procs.insert(0, ww)
        run.wait_bound(ww, port, variant, cwd, "server.log")
        last = FIRST_NUMBER + count - 1
        url = (f"http://{run.LOOPBACK}:{http}/impi/{last}%40example.com/av/digest"
               f"?impu=sip%3A{last}%40example.com")
        deadline = time.monotonic() + 120
        while not http_ok(url):
            if ww.poll() is not None or time.monotonic() > deadline:
                run.die(f"{variant}: demo subscribers never appeared (see {cwd}/server.log)")
            time.sleep(0.2)

    def cpu(self):
        return sum(self.run.cpu_seconds(p.pid) for p in self.procs)

    def alive(self):
        return all(p.poll() is None for p in self.procs)

    def stop(self):
        for p in self.procs:
            self.run.stop(p)


def sipp(run, args, cwd, port, scenario, csv, count, rate, name, extra=()):
    """Runs one SIPp UAC to the end, pinned to the SIPp core; returns its final stats."""
    cmd = ["sipp", f"{run.LOOPBACK}:{port}", "-sf", run.SCENARIOS / scenario, "-inf", csv,
           "-i", run.LOOPBACK, "-m", count, "-r", rate, "-l", max(200, rate * 2),
           "-recv_timeout", "10000", "-timeout", f"{count / rate + 60:.0f}s", "-nostdin",
           "-trace_stat", "-stf", f"{name}_stat.csv", "-fd", "1",
           # SIPp names its peer's address in the digest uri unless told the Request-URI
           # (it adds the "sip:").
           "-auth_uri", "example.com", *extra]
    p = run.start(cmd, cwd, f"{name}.out", args.sipp_core)
    rc = p.wait()
    run.STARTED.remove(p)
    return rc, run.parse_stat_csv(cwd / f"{name}_stat.csv")


def rtts(cwd, prefix):
    out = []
    for f in Path(cwd).glob(f"{prefix}_*_rtt.csv"):
        for line in f.read_text(errors="replace").splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 3 and parts[2].strip() == "1":
                out.append(float(parts[1]))
    return out


def measure(run, args, variant, rawdir, port):
    cwd = rawdir / variant
    cwd.mkdir(parents=True)
    users = cwd / "users.csv"
    write_users(users, args.subscribers)
    auth = "noauth" not in variant
    scenario = "register-digest.xml" if auth else "register-noauth.xml"
    prefix = scenario.removesuffix(".xml")
    count = int(round(args.rate * args.duration))
    run.log(f"{variant}: {args.subscribers} subscribers, then {count} registrations "
            f"at {args.rate}/s")
    server = Server(run, args, variant, cwd, port, args.subscribers)
    try:
        rc, warm = sipp(run, args, cwd, port, scenario, users, args.subscribers, args.rate, "warmup")
        if run.counter(warm, "SuccessfulCall") != args.subscribers:
            run.log(f"  warning: warm-up registered {run.counter(warm, 'SuccessfulCall')}"
                    f"/{args.subscribers} (sipp rc {rc})")
        for f in cwd.glob(f"{prefix}_*_rtt.csv"):
            f.unlink()
        busy0 = run.core_busy(args.proxy_core)
        cpu0, t0 = server.cpu(), time.monotonic()
        rc, stats = sipp(run, args, cwd, port, scenario, users, count, args.rate, "measured",
                         ("-trace_rtt", "-rtt_freq", "100"))
        t_sipp = time.monotonic()
        time.sleep(args.drain)
        alive = server.alive()
        cpu1, t1 = server.cpu(), time.monotonic()
        busy1 = run.core_busy(args.proxy_core)
    finally:
        server.stop()
    ok, failed = run.counter(stats, "SuccessfulCall"), run.counter(stats, "FailedCall")
    samples = rtts(cwd, prefix)
    wall = t_sipp - t0
    r = {
        "variant": variant, "auth": auth, "rate": args.rate, "offered": count, "ok": ok,
        "failed": failed, "retrans": run.counter(stats, "Retransmissions"), "sipp_rc": rc,
        "cpu_s": cpu1 - cpu0,
        "cpu_us_per_registration": (cpu1 - cpu0) * 1e6 / ok if ok and alive else None,
        "server_core_pct": 100.0 * (cpu1 - cpu0) / wall,
        "other_on_core_pct": max(0.0, 100.0 * (busy1 - busy0 - (cpu1 - cpu0)) / (t1 - t0)),
        "achieved_rate": ok / wall if wall > 0 else 0.0,
        "p50_ms": run.percentile(samples, 50), "p99_ms": run.percentile(samples, 99),
        "alive": alive,
    }
    cpu = "-" if r["cpu_us_per_registration"] is None else f"{r['cpu_us_per_registration']:.1f}"
    run.log(f"  ok {ok}/{count} failed {failed} retrans {r['retrans']} cpu {cpu} us/registration "
            f"(server core {r['server_core_pct']:.0f}%, other {r['other_on_core_pct']:.0f}%) "
            f"p50 {r['p50_ms']} p99 {r['p99_ms']} ms")
    (cwd / "result.json").write_text(json.dumps(r, indent=1))
    return r


def terminating(run, args, variant, rawdir, port):
    """Calls to registered users: every subscriber registers the callee SIPp's address,
    then `call-registered-uac.xml` calls them (100 ms calls) at --calls-rate for
    --duration; CPU µs per call."""
    cwd = rawdir / f"{variant}-calls"
    cwd.mkdir(parents=True)
    subs = args.subscribers
    write_users(cwd / "users.csv", subs)
    write_pairs(cwd / "pairs.csv", subs)
    scenario = "register-noauth.xml" if "noauth" in variant else "register-digest.xml"
    calls = int(round(args.calls_rate * args.duration))
    run.log(f"{variant}: {subs} subscribers registered, then {calls} calls to them at "
            f"{args.calls_rate}/s")
    uas_port = run.free_ports([1])[0]
    server = Server(run, args, variant, cwd, port, subs)
    uas = None
    try:
        # Registered from the callee SIPp's port, so every contact is that SIPp.
        _, warm = sipp(run, args, cwd, port, scenario, cwd / "users.csv", subs,
                       min(2000, subs), "initial", ("-p", uas_port))
        registered = run.counter(warm, "SuccessfulCall")
        uas = run.start(["sipp", "-sf", run.SCENARIOS / "proxy-uas.xml", "-i", run.LOOPBACK,
                         "-p", uas_port, "-nostdin"], cwd, "uas.out", args.sipp_core)
        run.wait_bound(uas, uas_port, "SIPp UAS", cwd, "uas.out")
        cpu0, t0 = server.cpu(), time.monotonic()
        _, stats = sipp(run, args, cwd, port, "call-registered-uac.xml", cwd / "pairs.csv",
                        calls, args.calls_rate, "calls", ("-d", "100"))
        wall = time.monotonic() - t0
        time.sleep(args.drain)
        alive = server.alive()
        cpu1 = server.cpu()
    finally:
        if uas is not None:
            run.stop(uas)
        server.stop()
    ok, failed = run.counter(stats, "SuccessfulCall"), run.counter(stats, "FailedCall")
    r = {
        "variant": variant, "registered": registered, "offered": calls, "ok": ok,
        "failed": failed, "retrans": run.counter(stats, "Retransmissions"),
        "cpu_us_per_call": (cpu1 - cpu0) * 1e6 / ok if ok and alive else None,
        "server_core_pct": 100.0 * (cpu1 - cpu0) / wall if wall > 0 else 0.0,
    }
    cpu = "-" if r["cpu_us_per_call"] is None else f"{r['cpu_us_per_call']:.1f}"
    run.log(f"  registered {registered}/{subs}; calls ok {ok}/{calls} failed {failed} "
            f"retrans {r['retrans']} cpu {cpu} us/call")
    (cwd / "result.json").write_text(json.dumps(r, indent=1))
    return r


def stress(run, args, rawdir, port):
    """The Clearwater stress profile at args.stress_subscribers: 2 re-REGISTERs and 1.3
    calls per subscriber per hour; Whitewater's CPU gives subscribers per core at 60 %."""
    subs = args.stress_subscribers
    cwd = rawdir / "stress"
    cwd.mkdir(parents=True)
    write_users(cwd / "users.csv", subs)
    write_pairs(cwd / "pairs.csv", subs)
    reg_rate, call_rate = 2.0 * subs / 3600, 1.3 * subs / 3600
    run.log(f"stress: {subs} subscribers: {reg_rate:.1f} re-REGISTER/s and {call_rate:.1f} "
            f"calls/s for {args.stress_duration:g} s")
    uas_port = run.free_ports([1])[0]
    server = Server(run, args, "ww-auth", cwd, port, subs)
    uas = None
    try:
        # Everyone registers once with the callee SIPp's address as contact.
        initial = min(2000, subs)
        rc, warm = sipp(run, args, cwd, port, "register-digest.xml", cwd / "users.csv", subs,
                        initial, "initial", ("-p", uas_port))
        run.log(f"  initial registration: {run.counter(warm, 'SuccessfulCall')}/{subs}")
        uas = run.start(["sipp", "-sf", run.SCENARIOS / "proxy-uas.xml", "-i", run.LOOPBACK,
                         "-p", uas_port, "-nostdin"], cwd, "uas.out", args.sipp_core)
        run.wait_bound(uas, uas_port, "SIPp UAS", cwd, "uas.out")
        regs = max(1, int(reg_rate * args.stress_duration))
        calls = max(1, int(call_rate * args.stress_duration))
        # Re-REGISTERs keep the contact at the callee SIPp's address, as the phones' would;
        # they come from another SIPp, so its scenario names that address itself.
        rereg = cwd / "reregister.xml"
        rereg.write_text((run.SCENARIOS / "register-digest.xml").read_text().replace(
            "@[local_ip]:[local_port];", f"@{run.LOOPBACK}:{uas_port};"))
        cpu0, t0 = server.cpu(), time.monotonic()
        reg_cmd = ["sipp", f"{run.LOOPBACK}:{port}", "-sf", rereg, "-inf", cwd / "users.csv",
                   "-i", run.LOOPBACK, "-m", regs, "-r", max(1, round(reg_rate * 10)), "-rp", "10000", "-nostdin",
                   "-trace_stat", "-stf", "reg_stat.csv", "-fd", "1"]
        reg = run.start(reg_cmd, cwd, "reg.out", args.sipp_core)
        call_cmd = ["sipp", f"{run.LOOPBACK}:{port}", "-sf", run.SCENARIOS / "call-registered-uac.xml",
                    "-inf", cwd / "pairs.csv", "-i", run.LOOPBACK, "-m", calls,
                    "-r", max(1, round(call_rate * 10)), "-rp", "10000", "-d", "1000", "-nostdin",
                    "-trace_stat", "-stf", "call_stat.csv", "-fd", "1"]
        call = run.start(call_cmd, cwd, "call.out", args.sipp_core)
        for p in (reg, call):
            p.wait()
            run.STARTED.remove(p)
        wall = time.monotonic() - t0
        cpu1 = server.cpu()
    finally:
        if uas is not None:
            run.stop(uas)
        server.stop()
    reg_s, call_s = run.parse_stat_csv(cwd / "reg_stat.csv"), run.parse_stat_csv(cwd / "call_stat.csv")
    pct = 100.0 * (cpu1 - cpu0) / wall
    r = {
        "subscribers": subs, "reg_rate": reg_rate, "call_rate": call_rate, "seconds": wall,
        "registrations_ok": run.counter(reg_s, "SuccessfulCall"),
        "registrations_failed": run.counter(reg_s, "FailedCall"),
        "calls_ok": run.counter(call_s, "SuccessfulCall"),
        "calls_failed": run.counter(call_s, "FailedCall"),
        "cpu_pct": pct,
        "subscribers_per_core_at_60pct": subs * 60.0 / pct if pct > 0 else None,
    }
    run.log(f"  stress: CPU {pct:.1f}% of a core; registrations {r['registrations_ok']} ok "
            f"{r['registrations_failed']} failed; calls {r['calls_ok']} ok {r['calls_failed']} "
            f"failed; about {r['subscribers_per_core_at_60pct'] or 0:,.0f} subscribers per core "
            f"at 60%")
    (cwd / "result.json").write_text(json.dumps(r, indent=1))
    return r


def write_report(run, args, results, stress_result, rawdir, command, calls=()):
    stamp = time.strftime("%Y-%m-%d")
    md = run.RESULTS / f"{stamp}-register.md"
    n = 2
    while md.exists():
        md = run.RESULTS / f"{stamp}-register-{n}.md"
        n += 1
    by = {r["variant"]: r for r in results}
    lines = [f"# REGISTER benchmark, {stamp}", "", f"Command: `{command}`", "",
             f"{args.subscribers} subscribers registered once, then {args.rate} registrations/s "
             f"for {args.duration:g} s (refreshes), SIPp pinned to core {args.sipp_core}, every "
             f"server to core {args.proxy_core}. CPU µs per registration = the server's "
             f"processes' utime+stime (/proc; with memcached, its too) over the measured run "
             f"plus {args.drain:g} s, per successful registration. With authentication a "
             f"registration is two transactions (401, then 200).", "",
             "| variant | auth | ok / offered | failed | retrans | CPU µs/registration | "
             "× Kamailio (same auth) | server core % | other load % | p50 ms | p99 ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        kam = by.get("kamailio-auth" if r["auth"] else "kamailio-noauth")
        ratio = (f"{r['cpu_us_per_registration'] / kam['cpu_us_per_registration']:.2f}"
                 if kam and kam["cpu_us_per_registration"] and r["cpu_us_per_registration"]
                 else "–")
        cpu = r["cpu_us_per_registration"]
        lines.append(
            f"| {r['variant']} | {'yes' if r['auth'] else 'no'} | {r['ok']} / {r['offered']} | "
            f"{r['failed']} | {r['retrans']} | {'–' if cpu is None else f'{cpu:.1f}'} | {ratio} | "
            f"{r['server_core_pct']:.0f} | {r['other_on_core_pct']:.0f} | {r['p50_ms']} | "
            f"{r['p99_ms']} |")
    if calls:
        kam = {r["variant"]: r for r in calls}
        lines += ["", f"## Calls to registered users", "",
                  f"Every subscriber registered with the callee SIPp's address as its contact, "
                  f"then `call-registered-uac.xml` (INVITE, 200, ACK, 100 ms, BYE, 200 through "
                  f"the server, which record-routes) at {args.calls_rate} calls/s for "
                  f"{args.duration:g} s. Kamailio: `lookup(\"location\")` + `t_relay()`. CPU µs "
                  f"per call as above, over the calls plus {args.drain:g} s.", "",
                  "| variant | registered | ok / offered | failed | retrans | CPU µs/call | "
                  "× Kamailio (same auth) |", "|---|---|---|---|---|---|---|"]
        for r in calls:
            k = kam.get("kamailio-auth" if "noauth" not in r["variant"] else "kamailio-noauth")
            cpu = r["cpu_us_per_call"]
            ratio = (f"{cpu / k['cpu_us_per_call']:.2f}"
                     if cpu and k and k["cpu_us_per_call"] else "–")
            lines.append(f"| {r['variant']} | {r['registered']} | {r['ok']} / {r['offered']} | "
                         f"{r['failed']} | {r['retrans']} | "
                         f"{'–' if cpu is None else f'{cpu:.1f}'} | {ratio} |")
    if stress_result:
        s = stress_result
        lines += ["", "## Clearwater stress profile", "",
                  f"{s['subscribers']} subscribers, 2 re-REGISTERs and 1.3 calls per subscriber "
                  f"per hour ({s['reg_rate']:.1f} registrations/s, {s['call_rate']:.1f} calls/s) "
                  f"for {s['seconds']:.0f} s on Whitewater all-in-one (embedded stores, "
                  f"Homestead in process, one core): CPU {s['cpu_pct']:.1f} % of the core; "
                  f"registrations {s['registrations_ok']} ok / {s['registrations_failed']} "
                  f"failed, calls {s['calls_ok']} ok / {s['calls_failed']} failed. "
                  f"Extrapolated: about {s['subscribers_per_core_at_60pct'] or 0:,.0f} "
                  f"subscribers per core at 60 % CPU (Clearwater's rated figure: about "
                  f"120,000 per 2-vCPU node)."]
    lines += ["", f"Raw output: `{rawdir.relative_to(run.ROOT)}/` (not committed)."]
    md.write_text("\n".join(lines) + "\n")
    return md


def main(args, argv, run):
    run.ensure_packages(any(v.startswith("kamailio") for v in args.variants))
    run.apt_ensure({"memcached": "memcached"})
    if not args.no_build:
        run.log("building whitewater (cargo build --release)")
        import subprocess
        if subprocess.run(["nice", "-n", "19", "cargo", "build", "--release", "--quiet",
                           "--bin", "whitewater"], cwd=run.ROOT).returncode != 0:
            run.die("building whitewater failed")
    import os
    os.environ["WW_LOG"] = "warn"
    run.raise_socket_limits(8 << 20)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rawdir = run.RESULTS / "raw" / f"{stamp}-register"
    rawdir.mkdir(parents=True)
    results = []
    try:
        for variant in args.variants:
            port = run.free_ports([3])[0]
            results.append(measure(run, args, variant, rawdir, port))
            time.sleep(1.0)
        calls = []
        if args.calls_rate:
            for variant in args.variants:
                calls.append(terminating(run, args, variant, rawdir, run.free_ports([3])[0]))
                time.sleep(1.0)
        stress_result = None
        if args.stress_subscribers:
            stress_result = stress(run, args, rawdir, run.free_ports([3])[0])
    finally:
        run.stop_all()
    command = "bench/run " + " ".join(argv)
    md = write_report(run, args, results, stress_result, rawdir, command, calls)
    run.log(f"report: {md.relative_to(run.ROOT)}")
    print(md.read_text())
    return 0
