#!/usr/bin/env bash
# Tests of whitewater-tune against fake /sys, /proc and /etc trees in a temporary directory.
# Never reads or writes the real /proc or /sys: every root and tool is redirected through
# WW_TUNE_* variables. Exits non-zero when any check fails. Needs shellcheck
# (apt-get install shellcheck); fails rather than skipping the lint when it is missing.
set -euo pipefail
shopt -s nullglob

here=$(cd "$(dirname "$0")" && pwd)
tool=$here/whitewater-tune
tmp=$(mktemp -d "${TMPDIR:-/tmp}/whitewater-tune-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

failures=0
checks=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# make_tree DIR ONLINE SIBLINGS NODES NIC_KIND
#   ONLINE    online cpu list, e.g. 0-7
#   SIBLINGS  "none" (one thread per core) or "ht" (cpu N and N+count/2 share a core)
#   NODES     per-node cpu lists, "0-7" or "0-3 4-7"
#   NIC_KIND  "ixgbe:NODE" (eth9: 4 TxRx queues, IRQs 40-43, link IRQ 39, and eth10 with
#             IRQ 44 as a decoy) or "virtio" (eth0 on virtio0: 2 queue pairs, IRQs 25-28)
make_tree() {
    local d=$1 online=$2 siblings=$3 nodes=$4 kind=$5 n c i nic node sys proc pci
    sys=$d/sys proc=$d/proc
    mkdir -p "$sys/devices/system/cpu" "$sys/class/net" "$sys/fs/cgroup" "$proc/sys/net/core" \
        "$proc/sys/net/ipv4" "$proc/1" "$d/etc/sysctl.d" "$d/systemd"
    echo "$online" >"$sys/devices/system/cpu/online"
    n=$((${online#*-} + 1))
    for ((c = 0; c < n; c++)); do
        mkdir -p "$sys/devices/system/cpu/cpu$c/topology"
        if [[ $siblings == ht ]]; then
            i=$((c % (n / 2)))
            echo "$i,$((i + n / 2))" >"$sys/devices/system/cpu/cpu$c/topology/thread_siblings_list"
        else
            echo "$c" >"$sys/devices/system/cpu/cpu$c/topology/thread_siblings_list"
        fi
    done
    i=0
    for node in $nodes; do
        mkdir -p "$sys/devices/system/node/node$i"
        echo "$node" >"$sys/devices/system/node/node$i/cpulist"
        i=$((i + 1))
    done
    echo "cpuset cpu io memory pids" >"$sys/fs/cgroup/cgroup.controllers"

    {
        printf '%12s' ''
        for ((c = 0; c < n; c++)); do printf '%-11s' "CPU$c"; done
        echo
        printf '%4s: %s  IR-IO-APIC    2-edge      timer\n' 0 "$(printf '%10s ' $(seq "$n"))"
        if [[ $kind == virtio ]]; then
            printf '%4s: %s  PCI-MSI-edge      virtio0-config\n' 24 "$(printf '%10s ' $(seq "$n"))"
            printf '%4s: %s  PCI-MSI-edge      virtio0-input.0\n' 25 "$(printf '%10s ' $(seq "$n"))"
            printf '%4s: %s  PCI-MSI-edge      virtio0-output.0\n' 26 "$(printf '%10s ' $(seq "$n"))"
            printf '%4s: %s  PCI-MSI-edge      virtio0-input.1\n' 27 "$(printf '%10s ' $(seq "$n"))"
            printf '%4s: %s  PCI-MSI-edge      virtio0-output.1\n' 28 "$(printf '%10s ' $(seq "$n"))"
        else
            printf '%4s: %s  IR-PCI-MSI 524288-edge      eth9\n' 39 "$(printf '%10s ' $(seq "$n"))"
            for i in 0 1 2 3; do
                printf '%4s: %s  IR-PCI-MSI 52429%s-edge      eth9-TxRx-%s\n' $((40 + i)) \
                    "$(printf '%10s ' $(seq "$n"))" "$i" "$i"
            done
            printf '%4s: %s  IR-PCI-MSI 526336-edge      eth10-TxRx-0\n' 44 "$(printf '%10s ' $(seq "$n"))"
        fi
        echo " NMI: $(printf '%10s ' $(seq "$n"))  Non-maskable interrupts"
    } >"$proc/interrupts"
    for i in 0 24 25 26 27 28 39 40 41 42 43 44; do
        mkdir -p "$proc/irq/$i"
        echo "$online" >"$proc/irq/$i/smp_affinity_list"
    done

    if [[ $kind == virtio ]]; then
        pci=$sys/devices/pci0000:00/0000:00:03.0
        mkdir -p "$pci/virtio0" "$pci/msi_irqs" "$sys/class/net/eth0/queues"
        echo -1 >"$pci/numa_node"
        for i in 24 25 26 27 28; do : >"$pci/msi_irqs/$i"; done
        ln -s ../../../devices/pci0000:00/0000:00:03.0/virtio0 "$sys/class/net/eth0/device"
        for i in 0 1; do
            mkdir -p "$sys/class/net/eth0/queues/rx-$i" "$sys/class/net/eth0/queues/tx-$i"
            echo 0 >"$sys/class/net/eth0/queues/rx-$i/rps_cpus"
        done
    else
        for nic in eth9:08 eth10:0a; do
            pci=$sys/devices/pci0000:00/0000:00:${nic#*:}.0 nic=${nic%:*}
            mkdir -p "$pci/msi_irqs" "$sys/class/net/$nic/queues"
            echo "${kind#*:}" >"$pci/numa_node"
            ln -s "../../../devices/pci0000:00/${pci##*/}" "$sys/class/net/$nic/device"
        done
        for i in 39 40 41 42 43; do : >"$sys/devices/pci0000:00/0000:00:08.0/msi_irqs/$i"; done
        : >"$sys/devices/pci0000:00/0000:00:0a.0/msi_irqs/44"
        for i in 0 1 2 3; do
            mkdir -p "$sys/class/net/eth9/queues/rx-$i" "$sys/class/net/eth9/queues/tx-$i"
            echo 00 >"$sys/class/net/eth9/queues/rx-$i/rps_cpus"
        done
    fi

    echo 212992 >"$proc/sys/net/core/rmem_max"
    echo 212992 >"$proc/sys/net/core/wmem_max"
    echo 212992 >"$proc/sys/net/core/rmem_default"
    echo 212992 >"$proc/sys/net/core/wmem_default"
    echo 1000 >"$proc/sys/net/core/netdev_max_backlog"
    echo 300 >"$proc/sys/net/core/netdev_budget"
    printf '94011\t125350\t188022\n' >"$proc/sys/net/ipv4/udp_mem"
    printf 'MemTotal:        8388608 kB\nMemFree:         4194304 kB\n' >"$proc/meminfo"
    echo "BOOT_IMAGE=/vmlinuz-6.1.0 root=UUID=1234 ro quiet" >"$proc/cmdline"
    echo systemd >"$proc/1/comm"

    # Fake systemctl: keeps AllowedCPUs per unit in $d/systemd and logs each call.
    mkdir -p "$d/bin"
    cat >"$d/bin/systemctl" <<'EOF'
#!/usr/bin/env bash
set -euo pipefail
state=${0%/bin/systemctl}/systemd
echo "systemctl $*" >>"$state/calls"
case "$1 $2" in
"show -p") cat "$state/$5" 2>/dev/null || echo ;;
"set-property --runtime") echo "${4#AllowedCPUs=}" >"$state/$3" ;;
*) echo "fake systemctl: unexpected $*" >&2; exit 1 ;;
esac
EOF
    cat >"$d/bin/systemd-run" <<'EOF'
#!/usr/bin/env bash
echo "fake systemd-run: $*"
EOF
    chmod +x "$d/bin/systemctl" "$d/bin/systemd-run"
}

# tune DIR ARGS...: run the tool against tree DIR, capturing combined output and status.
tune() {
    local d=$1
    shift
    set +e
    out=$(WW_TUNE_SYSFS=$d/sys WW_TUNE_PROCFS=$d/proc WW_TUNE_ETC=$d/etc \
        WW_TUNE_SYSTEMCTL=$d/bin/systemctl WW_TUNE_SYSTEMD_RUN=$d/bin/systemd-run \
        WW_TUNE_PAGE_SIZE=4096 WW_TUNE_DRY_RUN=${DRY:-0} "$tool" "$@" 2>&1)
    status=$?
    set -e
}

# expect NAME STATUS: compare the last run's status and output with stdin, exactly.
expect() {
    local name=$1 want_status=$2 want
    want=$(cat)
    checks=$((checks + 1))
    if [[ $status != "$want_status" ]]; then
        fail "$name: exit status $status, expected $want_status; output:"
        printf '%s\n' "$out" | sed 's/^/    /'
    elif [[ $out != "$want" ]]; then
        fail "$name: output differs (< expected, > actual):"
        diff <(printf '%s\n' "$want") <(printf '%s\n' "$out") | sed 's/^/    /' || true
    fi
}

# file_is NAME FILE CONTENT
file_is() {
    checks=$((checks + 1))
    if [[ ! -f $2 ]]; then
        fail "$1: $2 does not exist"
    elif [[ $(<"$2") != "$3" ]]; then
        fail "$1: $2 holds '$(<"$2")', expected '$3'"
    fi
}

# A tree whose state must not change: snapshot and compare every file.
snapshot() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 md5sum) }
unchanged_since() {
    checks=$((checks + 1))
    [[ $(snapshot "$1") == "$2" ]] || fail "$3: the dry run changed files in the fake tree"
}

# --- the harness can fail: a wrong expectation must be reported -------------------------
out=hello status=0
before=$failures
expect "self-test" 0 <<<"goodbye" >/dev/null
if ((failures != before + 1)); then
    echo "FAIL: expect() did not report a differing output"
    exit 1
fi
failures=$before checks=$((checks - 1))

# --- 8 cpus, one thread per core, eth9 with 4 queues on node 0, irqbalance running -------
A=$tmp/a
make_tree "$A" 0-7 none 0-7 ixgbe:0
mkdir -p "$A/proc/4242" && echo irqbalance >"$A/proc/4242/comm"
P=$A/proc S=$A/sys

tune "$A" plan --nic eth9
expect "plan" 0 <<EOF
nic:            eth9, 4 rx queues, numa node 0
queue irqs:     40 41 42 43
online cpus:    0-7 (numa node 0: 0-7)
data plane:     1-4 (one core per rx queue)
control plane:  0,5-7 (with the kernel; --control-cores 1 reserved 0)

irq assignment:
  irq 40 (eth9-TxRx-0) -> cpu 1
  irq 41 (eth9-TxRx-1) -> cpu 2
  irq 42 (eth9-TxRx-2) -> cpu 3
  irq 43 (eth9-TxRx-3) -> cpu 4

to apply:
  whitewater-tune irq --nic eth9 --cores 1-4
  whitewater-tune isolate --cores 1-4
  whitewater-tune sysctl --persist
  whitewater-tune run -- whitewater sprout --listen ADDRESS:5060 --cores 1-4
EOF

tune "$A" plan --nic=eth9 --control-cores 2
expect "plan --control-cores 2" 0 <<EOF
nic:            eth9, 4 rx queues, numa node 0
queue irqs:     40 41 42 43
online cpus:    0-7 (numa node 0: 0-7)
data plane:     2-5 (one core per rx queue)
control plane:  0-1,6-7 (with the kernel; --control-cores 2 reserved 0-1)

irq assignment:
  irq 40 (eth9-TxRx-0) -> cpu 2
  irq 41 (eth9-TxRx-1) -> cpu 3
  irq 42 (eth9-TxRx-2) -> cpu 4
  irq 43 (eth9-TxRx-3) -> cpu 5

to apply:
  whitewater-tune irq --nic eth9 --cores 2-5
  whitewater-tune isolate --cores 2-5
  whitewater-tune sysctl --persist
  whitewater-tune run -- whitewater sprout --listen ADDRESS:5060 --cores 2-5
EOF

tune "$A" plan --nic eth9 --control-cores 0
expect "plan --control-cores 0" 2 <<EOF
whitewater-tune: error: --control-cores must be a whole number of at least 1 (got '0')
run 'whitewater-tune --help' for usage
EOF

tune "$A" plan --nic eth7
expect "plan, no such nic" 1 <<EOF
whitewater-tune: error: no network interface 'eth7' ($S/class/net/eth7 does not exist)
EOF

snap=$(snapshot "$A")
irq_dry_expected=$(
    cat <<EOF
whitewater-tune: warning: irqbalance is running (pid 4242) and may move these IRQs again. Stop it (systemctl disable --now irqbalance), or make it leave them alone in /etc/default/irqbalance: IRQBALANCE_ARGS="--banirq=40 --banirq=41 --banirq=42 --banirq=43" and IRQBALANCE_BANNED_CPULIST=1-4
would write $P/irq/40/smp_affinity_list: 0-7 -> 1  (eth9-TxRx-0)
would write $P/irq/41/smp_affinity_list: 0-7 -> 2  (eth9-TxRx-1)
would write $P/irq/42/smp_affinity_list: 0-7 -> 3  (eth9-TxRx-2)
would write $P/irq/43/smp_affinity_list: 0-7 -> 4  (eth9-TxRx-3)
note: IRQ affinity is lost at reboot, driver reload and ethtool -L; run this again then
dry run: nothing was changed
EOF
)
tune "$A" --dry-run irq --nic eth9 --cores 1-4
expect "irq --dry-run" 0 <<<"$irq_dry_expected"
unchanged_since "$A" "$snap" "irq --dry-run"
tune "$A" irq --nic eth9 --cores 1-4 --dry-run
expect "irq, --dry-run after the command" 0 <<<"$irq_dry_expected"
DRY=1 tune "$A" irq --nic eth9 --cores 1-4
expect "irq, WW_TUNE_DRY_RUN=1" 0 <<<"$irq_dry_expected"
unchanged_since "$A" "$snap" "irq, WW_TUNE_DRY_RUN=1"

tune "$A" --dry-run irq --nic eth9 --cores 3,1,1
expect "irq --dry-run, 2 cores for 4 queues, in ascending order" 0 <<EOF
whitewater-tune: warning: irqbalance is running (pid 4242) and may move these IRQs again. Stop it (systemctl disable --now irqbalance), or make it leave them alone in /etc/default/irqbalance: IRQBALANCE_ARGS="--banirq=40 --banirq=41 --banirq=42 --banirq=43" and IRQBALANCE_BANNED_CPULIST=1,3
would write $P/irq/40/smp_affinity_list: 0-7 -> 1  (eth9-TxRx-0)
would write $P/irq/41/smp_affinity_list: 0-7 -> 3  (eth9-TxRx-1)
would write $P/irq/42/smp_affinity_list: 0-7 -> 1  (eth9-TxRx-2)
would write $P/irq/43/smp_affinity_list: 0-7 -> 3  (eth9-TxRx-3)
note: 4 queue irqs on 2 cores: several queues share a core (ethtool -L eth9 combined 2 gives one queue per core)
note: IRQ affinity is lost at reboot, driver reload and ethtool -L; run this again then
dry run: nothing was changed
EOF

# Without --dry-run: the files are written; the link IRQ (39) and eth10's (44) are not touched.
rm "$A/proc/4242/comm"
echo 0f >"$S/class/net/eth9/queues/rx-2/rps_cpus"
tune "$A" irq --nic eth9 --cores 1-4
expect "irq" 0 <<EOF
whitewater-tune: warning: RPS is on for eth9 rx-2: the kernel hands packets to other cpus after the IRQ; with one queue per data core write 0 to $S/class/net/eth9/queues/rx-*/rps_cpus
wrote $P/irq/40/smp_affinity_list: 0-7 -> 1  (eth9-TxRx-0)
wrote $P/irq/41/smp_affinity_list: 0-7 -> 2  (eth9-TxRx-1)
wrote $P/irq/42/smp_affinity_list: 0-7 -> 3  (eth9-TxRx-2)
wrote $P/irq/43/smp_affinity_list: 0-7 -> 4  (eth9-TxRx-3)
note: IRQ affinity is lost at reboot, driver reload and ethtool -L; run this again then
EOF
echo 00 >"$S/class/net/eth9/queues/rx-2/rps_cpus"
for i in 0 1 2 3; do file_is "irq wrote irq $((40 + i))" "$P/irq/$((40 + i))/smp_affinity_list" $((i + 1)); done
file_is "irq left the link irq" "$P/irq/39/smp_affinity_list" 0-7
file_is "irq left eth10's irq" "$P/irq/44/smp_affinity_list" 0-7

tune "$A" irq --nic eth9 --cores 1-4
expect "irq, again" 0 <<EOF
unchanged $P/irq/40/smp_affinity_list: 1  (eth9-TxRx-0)
unchanged $P/irq/41/smp_affinity_list: 2  (eth9-TxRx-1)
unchanged $P/irq/42/smp_affinity_list: 3  (eth9-TxRx-2)
unchanged $P/irq/43/smp_affinity_list: 4  (eth9-TxRx-3)
note: IRQ affinity is lost at reboot, driver reload and ethtool -L; run this again then
EOF

# Without the right to write, each failed write is reported, the others still run, and the
# exit status is 1. Root ignores file modes, so as root the tool runs as nobody.
cp "$tool" "$tmp/whitewater-tune"
if (($(id -u) == 0)); then
    chmod 755 "$tmp"
    printf '#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups %s "$@"\n' \
        "$tmp/whitewater-tune" >"$tmp/as-user"
else
    chmod 444 "$P"/irq/4[0-3]/smp_affinity_list
    printf '#!/bin/sh\nexec %s "$@"\n' "$tmp/whitewater-tune" >"$tmp/as-user"
fi
chmod 755 "$tmp/as-user"
tool=$tmp/as-user tune "$A" irq --nic eth9 --undo
expect "irq --undo without the right to write" 1 <<EOF
FAILED to write $P/irq/40/smp_affinity_list: 1 -> 0-7  (eth9-TxRx-0): Permission denied
FAILED to write $P/irq/41/smp_affinity_list: 2 -> 0-7  (eth9-TxRx-1): Permission denied
FAILED to write $P/irq/42/smp_affinity_list: 3 -> 0-7  (eth9-TxRx-2): Permission denied
FAILED to write $P/irq/43/smp_affinity_list: 4 -> 0-7  (eth9-TxRx-3): Permission denied
note: IRQ affinity is lost at reboot, driver reload and ethtool -L; run this again then
whitewater-tune: error: 4 change(s) failed, see above (most need root; --dry-run shows them without changing anything)
EOF
chmod 644 "$P"/irq/4[0-3]/smp_affinity_list
file_is "failed irq --undo left irq 40 alone" "$P/irq/40/smp_affinity_list" 1

tune "$A" irq --nic eth9 --undo
expect "irq --undo" 0 <<EOF
wrote $P/irq/40/smp_affinity_list: 1 -> 0-7  (eth9-TxRx-0)
wrote $P/irq/41/smp_affinity_list: 2 -> 0-7  (eth9-TxRx-1)
wrote $P/irq/42/smp_affinity_list: 3 -> 0-7  (eth9-TxRx-2)
wrote $P/irq/43/smp_affinity_list: 4 -> 0-7  (eth9-TxRx-3)
note: IRQ affinity is lost at reboot, driver reload and ethtool -L; run this again then
EOF
file_is "irq --undo wrote irq 43" "$P/irq/43/smp_affinity_list" 0-7

# --- bad core lists: non-zero exit and a clear message, for every command taking --cores ----
bad_list() {
    local list=$1 message=$2 cmd
    for cmd in "irq --nic eth9" isolate run; do
        # shellcheck disable=SC2086 # $cmd is several words on purpose
        if [[ $cmd == run ]]; then
            tune "$A" --dry-run run -- whitewater sprout --cores "$list"
        else
            tune "$A" --dry-run $cmd --cores "$list"
        fi
        expect "$cmd --cores '$list'" 1 <<<"whitewater-tune: error: --cores${message}"
    done
}
bad_list '' ": empty core list (expected e.g. 0-3 or 0,2,4-7)"
bad_list a ": bad core list 'a' (expected e.g. 0-3 or 0,2,4-7)"
bad_list 1- ": bad core list '1-' (expected e.g. 0-3 or 0,2,4-7)"
bad_list 0,,1 ": bad core list '0,,1' (expected e.g. 0-3 or 0,2,4-7)"
bad_list '1 2' ": bad core list '1 2' (expected e.g. 0-3 or 0,2,4-7)"
bad_list -1 ": bad core list '-1' (expected e.g. 0-3 or 0,2,4-7)"
bad_list ' ' ": empty core list (expected e.g. 0-3 or 0,2,4-7)"
bad_list 1-2-3 ": bad core list '1-2-3' (expected e.g. 0-3 or 0,2,4-7)"
bad_list 3-1 ": bad range '3-1' in '3-1' (its start is above its end)"
bad_list 99999 ": cpu number out of range in '99999' (the largest is 4095)"
bad_list 0-4096 ": cpu number out of range in '0-4096' (the largest is 4095)"
bad_list 9 " 9: cpu 9 is not online (online cpus: 0-7)"
bad_list 0,2,4-8 " 0,2,4-8: cpu 8 is not online (online cpus: 0-7)"

tune "$A" isolate --cores 0-7
expect "isolate with every cpu" 1 <<EOF
whitewater-tune: error: --cores 0-7 covers every online cpu: leave at least one for the control plane and the kernel
EOF

# --- sysctl: raises, never lowers; --persist writes the file; dry runs change nothing ------
echo 100000 >"$P/sys/net/core/netdev_max_backlog"
sysctl_lines() { # VERB
    cat <<EOF
$1 $P/sys/net/core/rmem_max: 212992 -> 33554432  (net.core.rmem_max)
$1 $P/sys/net/core/wmem_max: 212992 -> 33554432  (net.core.wmem_max)
$1 $P/sys/net/core/rmem_default: 212992 -> 8388608  (net.core.rmem_default)
$1 $P/sys/net/core/wmem_default: 212992 -> 4194304  (net.core.wmem_default)
unchanged $P/sys/net/core/netdev_max_backlog: 100000  (net.core.netdev_max_backlog; target 65536, the current value is higher and kept)
$1 $P/sys/net/core/netdev_budget: 300 -> 600  (net.core.netdev_budget)
$1 $P/sys/net/ipv4/udp_mem: 94011 125350 188022 -> 131072 262144 524288  (net.ipv4.udp_mem)
EOF
}
conf=$A/etc/sysctl.d/60-whitewater.conf
conf_text="# Whitewater data-plane sysctls, written by whitewater-tune sysctl --persist.
# Each value and its reason: tuning/README.md in the Whitewater repository.
net.core.rmem_max = 33554432
net.core.wmem_max = 33554432
net.core.rmem_default = 8388608
net.core.wmem_default = 4194304
net.core.netdev_max_backlog = 100000
net.core.netdev_budget = 600
net.ipv4.udp_mem = 131072 262144 524288"
conf_plus=$(printf '  + %s\n' "${conf_text//$'\n'/$'\n'  + }")
undo_line="undo: sysctl -w net.core.rmem_max=212992 net.core.wmem_max=212992 net.core.rmem_default=212992 net.core.wmem_default=212992 net.core.netdev_budget=300 'net.ipv4.udp_mem=94011 125350 188022'"

snap=$(snapshot "$A")
tune "$A" --dry-run sysctl
expect "sysctl --dry-run" 0 <<EOF
$(sysctl_lines "would write")
note: these last until reboot; --persist also writes $conf
$undo_line
dry run: nothing was changed
EOF
tune "$A" --dry-run sysctl --persist
expect "sysctl --dry-run --persist" 0 <<EOF
$(sysctl_lines "would write")
would write $conf (new file):
$conf_plus
$undo_line && rm $conf
dry run: nothing was changed
EOF
unchanged_since "$A" "$snap" "sysctl --dry-run --persist"

tune "$A" sysctl --persist
expect "sysctl --persist" 0 <<EOF
$(sysctl_lines wrote)
wrote $conf (new file):
$conf_plus
$undo_line && rm $conf
EOF
file_is "sysctl wrote rmem_max" "$P/sys/net/core/rmem_max" 33554432
file_is "sysctl wrote udp_mem" "$P/sys/net/ipv4/udp_mem" "131072 262144 524288"
file_is "sysctl kept the higher backlog" "$P/sys/net/core/netdev_max_backlog" 100000
file_is "sysctl --persist wrote the file" "$conf" "$conf_text"

tune "$A" sysctl --persist
expect "sysctl --persist, again" 0 <<EOF
unchanged $P/sys/net/core/rmem_max: 33554432  (net.core.rmem_max)
unchanged $P/sys/net/core/wmem_max: 33554432  (net.core.wmem_max)
unchanged $P/sys/net/core/rmem_default: 8388608  (net.core.rmem_default)
unchanged $P/sys/net/core/wmem_default: 4194304  (net.core.wmem_default)
unchanged $P/sys/net/core/netdev_max_backlog: 100000  (net.core.netdev_max_backlog; target 65536, the current value is higher and kept)
unchanged $P/sys/net/core/netdev_budget: 600  (net.core.netdev_budget)
unchanged $P/sys/net/ipv4/udp_mem: 131072 262144 524288  (net.ipv4.udp_mem)
unchanged $conf
EOF

# --- isolate: systemd AllowedCPUs through (fake) systemctl; boot parameters printed only ---
SC=$A/bin/systemctl
isolate_tail=$(
    cat <<EOF
note: runtime only (gone at reboot). Start whitewater outside these units, or the
      cpuset keeps it off its own cores: whitewater-tune run -- whitewater sprout ... --cores 1-4
      or Slice=whitewater.slice in its systemd unit.

kernel boot parameters (printed only; this script never edits the bootloader):
  current: BOOT_IMAGE=/vmlinuz-6.1.0 root=UUID=1234 ro quiet
  add:     isolcpus=domain,1-4 nohz_full=1-4 rcu_nocbs=1-4 irqaffinity=0,5-7
  Debian/Ubuntu: append them to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub, reboot.
  RHEL/Fedora:   grubby --update-kernel=ALL --args="...", reboot.
EOF
)
tune "$A" --dry-run isolate --cores 1-4
expect "isolate --dry-run" 0 <<EOF
would run $SC set-property --runtime system.slice AllowedCPUs=0,5-7  (system.slice AllowedCPUs: (all) -> 0,5-7)
would run $SC set-property --runtime user.slice AllowedCPUs=0,5-7  (user.slice AllowedCPUs: (all) -> 0,5-7)
would run $SC set-property --runtime init.scope AllowedCPUs=0,5-7  (init.scope AllowedCPUs: (all) -> 0,5-7)
$isolate_tail
dry run: nothing was changed
EOF
checks=$((checks + 1))
! grep -q set-property "$A/systemd/calls" || fail "isolate --dry-run called systemctl set-property"

: >"$A/systemd/calls"
tune "$A" isolate --cores 4,1-3
expect "isolate" 0 <<EOF
ran $SC set-property --runtime system.slice AllowedCPUs=0,5-7  (system.slice AllowedCPUs: (all) -> 0,5-7)
ran $SC set-property --runtime user.slice AllowedCPUs=0,5-7  (user.slice AllowedCPUs: (all) -> 0,5-7)
ran $SC set-property --runtime init.scope AllowedCPUs=0,5-7  (init.scope AllowedCPUs: (all) -> 0,5-7)
$isolate_tail
EOF
file_is "isolate's systemctl calls" "$A/systemd/calls" "systemctl show -p AllowedCPUs --value system.slice
systemctl set-property --runtime system.slice AllowedCPUs=0,5-7
systemctl show -p AllowedCPUs --value user.slice
systemctl set-property --runtime user.slice AllowedCPUs=0,5-7
systemctl show -p AllowedCPUs --value init.scope
systemctl set-property --runtime init.scope AllowedCPUs=0,5-7"

echo "0 5-7" >"$A/systemd/system.slice" # systemd prints cpu sets with spaces
tune "$A" isolate --cores 1-4
expect "isolate, again" 0 <<EOF
unchanged system.slice AllowedCPUs: 0,5-7
unchanged user.slice AllowedCPUs: 0,5-7
unchanged init.scope AllowedCPUs: 0,5-7
$isolate_tail
EOF

tune "$A" isolate --undo
expect "isolate --undo" 0 <<EOF
ran $SC set-property --runtime system.slice AllowedCPUs=  (system.slice AllowedCPUs: 0,5-7 -> (all))
ran $SC set-property --runtime user.slice AllowedCPUs=  (user.slice AllowedCPUs: 0,5-7 -> (all))
ran $SC set-property --runtime init.scope AllowedCPUs=  (init.scope AllowedCPUs: 0,5-7 -> (all))
EOF

echo "cpu io memory pids" >"$S/fs/cgroup/cgroup.controllers"
tune "$A" --dry-run isolate --undo
expect "isolate without the cpuset controller" 0 <<EOF
whitewater-tune: warning: the cgroup v2 cpuset controller is not available ($S/fs/cgroup/cgroup.controllers): AllowedCPUs= has no effect here; use CPUAffinity= in /etc/systemd/system.conf instead (README.md)
unchanged system.slice AllowedCPUs: (all)
unchanged user.slice AllowedCPUs: (all)
unchanged init.scope AllowedCPUs: (all)
dry run: nothing was changed
EOF

# --- run: starts the command in whitewater.slice after checking its --cores ---------------
tune "$A" --dry-run run -- whitewater sprout --listen 127.0.0.1:5060 --cores 1-4
expect "run --dry-run" 0 <<EOF
would run: $A/bin/systemd-run --scope --quiet --slice=whitewater.slice -- whitewater sprout --listen 127.0.0.1:5060 --cores 1-4
dry run: nothing was changed
EOF
tune "$A" run -- whitewater sprout --listen 127.0.0.1:5060 "--cores=4, 1-3,2"
expect "run" 0 <<EOF
fake systemd-run: --scope --quiet --slice=whitewater.slice -- whitewater sprout --listen 127.0.0.1:5060 --cores=4, 1-3,2
EOF
echo init >"$P/1/comm"
tune "$A" run -- echo started --dry-run --cores 2
expect "run without systemd" 0 <<EOF
whitewater-tune: warning: systemd is not running: starting the command as it is, in the current cgroup
started --dry-run --cores 2
EOF
tune "$A" run -- whitewater sprout --cores
expect "run, --cores without a value" 2 <<EOF
whitewater-tune: error: run: the command's --cores has no value
run 'whitewater-tune --help' for usage
EOF

# --- usage errors ----------------------------------------------------------------------------
tune "$A"
expect "no command" 2 <<EOF
whitewater-tune: error: no command given
run 'whitewater-tune --help' for usage
EOF
tune "$A" frob
expect "unknown command" 2 <<EOF
whitewater-tune: error: unknown command 'frob'
run 'whitewater-tune --help' for usage
EOF
tune "$A" irq --cores 1
expect "irq without --nic" 2 <<EOF
whitewater-tune: error: irq needs --nic IFACE
run 'whitewater-tune --help' for usage
EOF
tune "$A" irq --nic eth9
expect "irq without --cores" 2 <<EOF
whitewater-tune: error: irq needs --cores LIST (or --undo)
run 'whitewater-tune --help' for usage
EOF
tune "$A" isolate --cores
expect "isolate, --cores without a value" 2 <<EOF
whitewater-tune: error: --cores needs a value
run 'whitewater-tune --help' for usage
EOF
DRY=yes tune "$A" sysctl
expect "bad WW_TUNE_DRY_RUN" 2 <<EOF
whitewater-tune: error: WW_TUNE_DRY_RUN must be 0 or 1 (got 'yes')
run 'whitewater-tune --help' for usage
EOF
tune "$A" irq --nic ../eth9 --cores 1
expect "bad interface name" 1 <<EOF
whitewater-tune: error: --nic: bad interface name '../eth9'
EOF
tune "$A" --help
checks=$((checks + 1))
[[ $status == 0 && $out == "usage: whitewater-tune [--dry-run] COMMAND [OPTIONS]"* ]] || fail "--help: status $status, output: $out"

# --- 8 cpus as 4 cores with 2 threads each: siblings stay off the data plane -------------
B=$tmp/b
make_tree "$B" 0-7 ht 0-7 ixgbe:0
tune "$B" plan --nic eth9
expect "plan, hyperthreads" 0 <<EOF
nic:            eth9, 4 rx queues, numa node 0
queue irqs:     40 41 42 43
online cpus:    0-7 (numa node 0: 0-7)
data plane:     1-3 (one core per rx queue)
idle siblings:  5-7 (hyperthread siblings of data-plane cores: keep them idle)
control plane:  0,4 (with the kernel; --control-cores 1 reserved 0,4)
whitewater-tune: warning: eth9 has 4 rx queues but the data plane gets only 3 free cores; several queues share a core below. Better: give the NIC one queue per core (ethtool -L eth9 combined 3, or rx 3 depending on the driver) and plan again

irq assignment:
  irq 40 (eth9-TxRx-0) -> cpu 1
  irq 41 (eth9-TxRx-1) -> cpu 2
  irq 42 (eth9-TxRx-2) -> cpu 3
  irq 43 (eth9-TxRx-3) -> cpu 1

to apply:
  whitewater-tune irq --nic eth9 --cores 1-3
  whitewater-tune isolate --cores 1-3,5-7
  whitewater-tune sysctl --persist
  whitewater-tune run -- whitewater sprout --listen ADDRESS:5060 --cores 1-3
EOF

# --- two NUMA nodes, the NIC on node 1 --------------------------------------------------
D=$tmp/d
make_tree "$D" 0-7 none "0-3 4-7" ixgbe:1
tune "$D" plan --nic eth9
expect "plan, nic on numa node 1" 0 <<EOF
nic:            eth9, 4 rx queues, numa node 1
queue irqs:     40 41 42 43
online cpus:    0-7 (numa node 1: 4-7)
data plane:     4-7 (one core per rx queue)
control plane:  0-3 (with the kernel; --control-cores 1 reserved 0)

irq assignment:
  irq 40 (eth9-TxRx-0) -> cpu 4
  irq 41 (eth9-TxRx-1) -> cpu 5
  irq 42 (eth9-TxRx-2) -> cpu 6
  irq 43 (eth9-TxRx-3) -> cpu 7

to apply:
  whitewater-tune irq --nic eth9 --cores 4-7
  whitewater-tune isolate --cores 4-7
  whitewater-tune sysctl --persist
  whitewater-tune run -- whitewater sprout --listen ADDRESS:5060 --cores 4-7
EOF

# Queue IRQs that no name identifies: every MSI IRQ of the device, with a warning.
sed -i 's/eth9-TxRx-/q/' "$D/proc/interrupts"
tune "$D" --dry-run irq --nic eth9 --cores 4-7
expect "irq, queue irqs from msi_irqs" 0 <<EOF
whitewater-tune: warning: no queue IRQ of eth9 is named in $D/proc/interrupts; using every MSI IRQ of its device ($D/sys/devices/pci0000:00/0000:00:08.0/msi_irqs), which may include IRQs that serve no queue
would write $D/proc/irq/39/smp_affinity_list: 0-7 -> 4  (eth9)
would write $D/proc/irq/40/smp_affinity_list: 0-7 -> 5  (q0)
would write $D/proc/irq/41/smp_affinity_list: 0-7 -> 6  (q1)
would write $D/proc/irq/42/smp_affinity_list: 0-7 -> 7  (q2)
would write $D/proc/irq/43/smp_affinity_list: 0-7 -> 4  (q3)
note: 5 queue irqs on 4 cores: several queues share a core (ethtool -L eth9 combined 4 gives one queue per core)
note: IRQ affinity is lost at reboot, driver reload and ethtool -L; run this again then
dry run: nothing was changed
EOF

# --- a 2-core VM with virtio-net (2 queue pairs): --cores 1, core 0 left -----------------
C=$tmp/c
make_tree "$C" 0-1 none 0-1 virtio
tune "$C" plan --nic eth0
expect "plan, 2-core vm" 0 <<EOF
nic:            eth0, 2 rx queues, no numa node reported
queue irqs:     25 27
online cpus:    0-1
data plane:     1 (one core per rx queue)
control plane:  0 (with the kernel; --control-cores 1 reserved 0)
whitewater-tune: warning: eth0 has 2 rx queues but the data plane gets only 1 free core; several queues share a core below. Better: give the NIC one queue per core (ethtool -L eth0 combined 1, or rx 1 depending on the driver) and plan again

irq assignment:
  irq 25 (virtio0-input.0) -> cpu 1
  irq 27 (virtio0-input.1) -> cpu 1

to apply:
  whitewater-tune irq --nic eth0 --cores 1
  whitewater-tune isolate --cores 1
  whitewater-tune sysctl --persist
  whitewater-tune run -- whitewater sprout --listen ADDRESS:5060 --cores 1
EOF
tune "$C" irq --nic eth0 --cores 1
expect "irq, 2-core vm" 0 <<EOF
wrote $C/proc/irq/25/smp_affinity_list: 0-1 -> 1  (virtio0-input.0)
wrote $C/proc/irq/27/smp_affinity_list: 0-1 -> 1  (virtio0-input.1)
note: 2 queue irqs on 1 core: several queues share a core (ethtool -L eth0 combined 1 gives one queue per core)
note: IRQ affinity is lost at reboot, driver reload and ethtool -L; run this again then
EOF
for i in 24 26 28; do file_is "irq left virtio irq $i" "$C/proc/irq/$i/smp_affinity_list" 0-1; done
file_is "irq wrote virtio irq 27" "$C/proc/irq/27/smp_affinity_list" 1
tune "$C" plan --nic eth0 --control-cores 2
expect "plan, no core left" 1 <<EOF
whitewater-tune: error: no core is left for the data plane on eth0's cpus (0-1) after --control-cores 2
EOF

# After ethtool -L eth0 combined 1: one queue, one core, no warning.
rm -r "$C/sys/class/net/eth0/queues/rx-1"
sed -i '/virtio0-[a-z]*put\.1$/d' "$C/proc/interrupts"
tune "$C" plan --nic eth0
expect "plan, 2-core vm with one queue" 0 <<EOF
nic:            eth0, 1 rx queue, no numa node reported
queue irqs:     25
online cpus:    0-1
data plane:     1 (one core per rx queue)
control plane:  0 (with the kernel; --control-cores 1 reserved 0)

irq assignment:
  irq 25 (virtio0-input.0) -> cpu 1

to apply:
  whitewater-tune irq --nic eth0 --cores 1
  whitewater-tune isolate --cores 1
  whitewater-tune sysctl --persist
  whitewater-tune run -- whitewater sprout --listen ADDRESS:5060 --cores 1
EOF

# --- the tool reaches /proc and /sys only through WW_TUNE_PROCFS and WW_TUNE_SYSFS ---------
checks=$((checks + 1))
stray=$(grep -nE '(^|[^A-Z}])/(proc|sys)(/|$|[^a-z])' "$tool" | grep -vE '^[0-9]+: *#|WW_TUNE_(SYSFS|PROCFS):-' || true)
[[ -z $stray ]] || fail "whitewater-tune names /proc or /sys directly:"$'\n'"$stray"

# --- lint ------------------------------------------------------------------------------------
checks=$((checks + 1))
if ! command -v shellcheck >/dev/null; then
    fail "shellcheck is not installed (apt-get install shellcheck)"
elif ! shellcheck "$tool" "$here/test.sh"; then
    fail "shellcheck reports the problems above"
fi

echo "tuning/test.sh: $checks checks, $failures failed"
((failures == 0))
