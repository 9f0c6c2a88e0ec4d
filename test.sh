#!/usr/bin/env bash
# Installs what the tests need, then runs every check and test. Debian with Rust; run as root.
# Fails loudly when something is missing: nothing is ever skipped.
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages the tests start as real processes. Each issue that adds a real peer
# (sip-tester, memcached, etcd-server, kamailio, ...) adds it here.
APT_PACKAGES=(sip-tester shellcheck baresip-core sox sipvicious python3-venv memcached)

fail() {
    echo "test.sh: $*" >&2
    exit 1
}

command -v cargo >/dev/null || fail "cargo not found: install Rust (rustup) first"
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component" || fail "cannot install the $component component"
    fi
done

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    [ "$(id -u)" -eq 0 ] || fail "needs root to install: ${missing[*]}"
    apt-get update -q || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" || fail "cannot install ${missing[*]}"
fi

# pjsua2 (PJSIP's Python binding) is a PyPI wheel, not a Debian package: it goes into a
# virtualenv under target/, made from Debian's own python3.
PEERS_VENV="$PWD/target/peers-venv"
if ! "$PEERS_VENV/bin/python" -c "import pjsua2" 2>/dev/null; then
    /usr/bin/python3 -m venv "$PEERS_VENV" || fail "cannot make a virtualenv at $PEERS_VENV"
    "$PEERS_VENV/bin/pip" install -q pjsua2-python || fail "cannot install pjsua2-python from PyPI"
fi
export WW_PEERS_PYTHON="$PEERS_VENV/bin/python"

step() { echo "== $*"; }

step "format"
cargo fmt --all -- --check
step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "fuzz targets compile"
cargo check --manifest-path fuzz/Cargo.toml --locked --quiet
step "tuning scripts"
tuning/test.sh
step "tests (unit, integration, property, SIPp, benches in test mode)"
cargo test --workspace --all-targets --locked
step "the SIP suites again with every core's UDP on its own io_uring (--udp-io uring)"
WW_UDP_IO=uring cargo test --locked --test proxy_sipp --test proxy_torture --test proxy_tcp \
  --test scscf_register --test scscf_regevent --test scscf_originating --test scscf_aka
step "doc tests"
cargo test --workspace --doc --locked
echo "test.sh: all checks passed"
