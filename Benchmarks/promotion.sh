#!/usr/bin/env bash
# Time from promotion to the first accepted write, PartitionDB beside PostgreSQL 15, in one run
# (issue 13's promotion row; Benchmarks/README.md). Each run lays out a fresh cluster, commits,
# SIGKILLs the primary, then times the two commands an operator would run:
#   PartitionDB: eu:3 hosts, users in quorum:1; `pdb promote pdb://eu-2 users`, then a
#                `pdb put` through eu-2, acknowledged durable by eu-3 (quorum:1).
#   PostgreSQL:  a primary and a streaming standby (synchronous_commit = on, no synchronous
#                standby after the promotion); `psql -c 'SELECT pg_promote()'`, then an INSERT.
# Both sides pay two client process starts. Prints every run, then the medians and their ratio.
# Usage: Benchmarks/promotion.sh PDB_BINARY [RUNS]
set -euo pipefail
pdb=${1:?usage: promotion.sh PDB_BINARY [RUNS]}
runs=${2:-5}
pgbin=/usr/lib/postgresql/15/bin
work=$(mktemp -d /tmp/pdb-promotion.XXXXXX)
chmod 755 "$work"
pids=()
trap 'rm -rf "$work"' EXIT
now() { date +%s%N; }
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Each run is a subshell (command substitution): it kills what it started, the parent removes $work.
killall_started() { for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done; }

pdb_run() {
    trap killall_started EXIT
    local dir="$work/pdb-$1" port=$((21000 + RANDOM % 300 * 10))
    "$pdb" cluster init "$dir" --regions eu:3 --base-port "$port" --commit-mode quorum:1 >/dev/null
    export PDB_TLS="$dir/operator"
    local hosts=() host
    for host in eu-1 eu-2 eu-3; do
        "$pdb" serve --config "$dir/hosts/$host/config.json" 2>"$dir/$host.log" &
        hosts+=($!)
        pids+=($!)
    done
    local eu2="pdb://127.0.0.1:$((port + 1))" eu1="pdb://127.0.0.1:$port"
    for address in "$eu1" "$eu2" "pdb://127.0.0.1:$((port + 2))"; do
        for _ in $(seq 1 200); do "$pdb" info "$address" >/dev/null 2>&1 && break; sleep 0.05; done
    done
    "$pdb" home set "$eu1" alice eu >/dev/null
    "$pdb" put "$eu1" users t before v --owner alice >/dev/null
    kill -9 "${hosts[0]}"
    wait "${hosts[0]}" 2>/dev/null || true
    local start end report
    start=$(now)
    report=$("$pdb" promote "$eu2" users --json)
    "$pdb" put "$eu2" users t after v --owner alice >/dev/null
    end=$(now)
    kill "${hosts[1]}" "${hosts[2]}" 2>/dev/null || true
    wait "${hosts[1]}" "${hosts[2]}" 2>/dev/null || true
    local inside
    inside=$(sed -n 's/.*"milliseconds":\([0-9]*\).*/\1/p' <<<"$report")
    echo "$(((end - start) / 1000)) $inside"
}

pg_run() {
    trap killall_started EXIT
    local dir="$work/pg-$1" port=$((25000 + RANDOM % 300 * 10))
    mkdir -p "$dir"
    chown postgres "$dir" 2>/dev/null || true
    as_postgres "$pgbin/initdb" -D "$dir/primary" -U bench -A trust --no-instructions >/dev/null
    cat >>"$dir/primary/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
wal_level = replica
fsync = on
synchronous_commit = on
max_wal_senders = 4
EOF
    echo "host replication bench 127.0.0.1/32 trust" >>"$dir/primary/pg_hba.conf"
    as_postgres "$pgbin/postgres" -D "$dir/primary" >"$dir/primary.log" 2>&1 &
    local primary=$!
    pids+=($primary)
    for _ in $(seq 1 200); do "$pgbin/pg_isready" -q -h "$dir" -p "$port" && break; sleep 0.05; done
    as_postgres "$pgbin/pg_basebackup" -D "$dir/standby" -R -X stream -c fast -h 127.0.0.1 -p "$port" -U bench
    echo "port = $((port + 1))" >>"$dir/standby/postgresql.conf"
    as_postgres "$pgbin/postgres" -D "$dir/standby" >"$dir/standby.log" 2>&1 &
    local standby=$!
    pids+=($standby)
    for _ in $(seq 1 200); do "$pgbin/pg_isready" -q -h "$dir" -p $((port + 1)) && break; sleep 0.05; done
    psql -qAt -h "$dir" -p "$port" -U bench -d postgres \
        -c "CREATE TABLE t (key text PRIMARY KEY, value text)" -c "INSERT INTO t VALUES ('before', 'v')" >/dev/null
    local lsn
    lsn=$(psql -qAt -h "$dir" -p "$port" -U bench -d postgres -c "SELECT pg_current_wal_lsn()")
    for _ in $(seq 1 200); do
        [ "$(psql -qAt -h "$dir" -p $((port + 1)) -U bench -d postgres \
            -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && break
        sleep 0.05
    done
    # The postmaster itself (its pid file), not runuser: a crash of the primary.
    kill -9 "$(head -1 "$dir/primary/postmaster.pid")"
    wait "$primary" 2>/dev/null || true
    local start end
    start=$(now)
    psql -qAt -h "$dir" -p $((port + 1)) -U bench -d postgres -c "SELECT pg_promote()" >/dev/null
    psql -qAt -h "$dir" -p $((port + 1)) -U bench -d postgres -c "INSERT INTO t VALUES ('after', 'v')" >/dev/null
    end=$(now)
    as_postgres "$pgbin/pg_ctl" -D "$dir/standby" stop -m fast >/dev/null
    wait "$standby" 2>/dev/null || true
    echo $(((end - start) / 1000))
}

: >"$work/pdb" && : >"$work/pg"
for run in $(seq 1 "$runs"); do
    read -r total inside < <(pdb_run "$run")
    pg=$(pg_run "$run")
    echo "run $run: partitiondb ${total} us (promote reports ${inside} ms inside the host), postgresql ${pg} us"
    echo "$total" >>"$work/pdb"
    echo "$pg" >>"$work/pg"
done
pdb_median=$(median <"$work/pdb")
pg_median=$(median <"$work/pg")
echo "median promotion to first accepted write: partitiondb $((pdb_median / 1000)) ms, postgresql $((pg_median / 1000)) ms, ratio $(awk "BEGIN {printf \"%.2f\", $pdb_median / $pg_median}")"
