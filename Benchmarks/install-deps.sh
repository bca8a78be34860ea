#!/usr/bin/env bash
# Installs the Debian packages the benchmarks need, when they are missing: SQLite and LMDB, which the
# engine benchmark links against, and PostgreSQL 15 (server, pgbench, pg_basebackup; openssl for its
# certificate), which the replication benchmark runs side by side with PartitionDB's log shipping.
# Idempotent: does nothing (and needs no network) when everything is present. The engine itself
# never depends on these; only this separate package does. Debian's postgresql-15 may create and
# start a cluster of its own on port 5432; the benchmark never uses it (it runs its own servers).
set -euo pipefail
packages=(libsqlite3-dev liblmdb-dev pkg-config postgresql-15 postgresql-client-15 openssl)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
