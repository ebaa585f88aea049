#!/bin/sh
# Installs the servers that `make bench` compares ordo with, from Debian's
# packages: etcd 3.4 (etcd-server), PostgreSQL 15 (postgresql-15) and Redis 7
# (redis-server). Idempotent: a package that is installed is skipped, and
# `apt-get update` runs only when something is missing. The packages' own
# services are not started (the benchmark starts its own servers on
# 127.0.0.1 with data in a temporary folder, and stops them).
#
# Needs root (or sudo). The Python client libraries are the `bench` extra of
# pyproject.toml.
set -eu

PACKAGES="etcd-server postgresql-15 redis-server"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "bench/install.sh: $PACKAGES already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# Keep the packages' init scripts from starting system-wide servers: with no
# policy-rc.d in place, put one that denies every start for the duration of
# the install, and remove it afterwards.
POLICY=/usr/sbin/policy-rc.d
ours=""
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    ours=1
fi
cleanup() {
    if [ -n "$ours" ]; then
        $SUDO rm -f "$POLICY"
    fi
}
trap cleanup EXIT INT TERM

echo "bench/install.sh: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
