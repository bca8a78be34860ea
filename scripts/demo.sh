#!/usr/bin/env bash
# A scripted tour through `pdb`: a database, partitions, homes, writes, a refused write, apply,
# a cluster with a replica's writes forwarded to the primary,
# inspection, check, backup and restore with checksums, refused careless commands, compaction. Usage: scripts/demo.sh PATH_TO_PDB
set -euo pipefail

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
    echo "usage: $0 PATH_TO_PDB" >&2
    exit 64
fi
pdb="$1"
work="$(mktemp -d "${TMPDIR:-/tmp}/pdb-demo.XXXXXX")"
servers=()
# Stops the hosts the tour started (SIGTERM: each closes its database), then removes the files.
cleanup() {
    local pid
    for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${servers[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
db="$work/eu-host"
step=0

# Prints a numbered heading.
heading() {
    step=$((step + 1))
    printf '\n== %d. %s\n' "$step" "$1"
}

# Prints `$ pdb ARGS` as one would type it: arguments with shell characters in single quotes.
show() {
    local line='$ pdb' arg
    for arg in "$@"; do
        if [[ "$arg" =~ ^[A-Za-z0-9_./:=@%+-]+$ ]]; then
            line+=" $arg"
        else
            line+=" '${arg//\'/\'\\\'\'}'"
        fi
    done
    printf '%s\n' "$line"
}

# Shows a command, then runs it; the tour stops if it fails.
run() {
    show "$@"
    "$pdb" "$@"
}

# Shows a command that must be refused, runs it (its error message shown in place), and goes
# on only if it was refused.
refused() {
    show "$@"
    if "$pdb" "$@" 2>&1; then
        echo "!! expected this to be refused, but it succeeded" >&2
        exit 1
    fi
    echo "-> refused, as it should be (exit status 1); nothing was written"
}

echo "PartitionDB tour in $work"

heading "Create a database for a host of region eu"
run init "$db" --region eu

heading "Create a partition of the host's region"
run create-partition "$db" users

heading "A partition of another region is refused, and no file is created"
refused create-partition "$db" us-users --region us
ls "$db"

heading "Give two subjects their home regions in the residency directory"
run home set "$db" alice eu
run home set "$db" bob us
run home list "$db"

heading "Store a record about alice (home eu) in the eu partition"
run put "$db" users profiles alice '{"name":"Alice","city":"Lyon"}' --owner alice

heading "A record about bob (home us) is refused by the engine"
refused put "$db" users profiles bob '{"name":"Bob","city":"Boston"}' --owner bob

heading "Read it back: one key, then the whole table (also as JSON lines)"
run get "$db" users profiles alice
run scan "$db" users profiles
run scan "$db" users profiles --json

heading "Apply JSON lines from stdin: a transaction of two puts, then one refused as a whole because a put names bob"
lines='{"op":"put","table":"orders","key":"alice/0001","value":"2 books","owner":"alice"}
{"op":"put","table":"orders","key":"alice/0002","value":"1 lamp","owner":"alice"}
{"op":"commit"}
{"op":"put","table":"orders","key":"alice/0003","value":"1 desk","owner":"alice"}
{"op":"put","table":"orders","key":"bob/0001","value":"1 chair","owner":"bob"}
{"op":"commit"}'
printf '%s\n' "$lines" | sed 's/^/  stdin: /'
show apply "$db" users
printf '%s\n' "$lines" | "$pdb" apply "$db" users || echo "-> exit status $?: the second transaction was aborted.
   The refused put of bob/0001 rolled back the whole transaction, alice/0003 with it; the
   commit line after it belonged to the aborted transaction and was discarded. So orders
   holds alice/0001 and alice/0002 only."
run scan "$db" users orders

heading "Inspect the database"
run info "$db"

heading "Check every page of every partition"
run check "$db"

heading "Back up the users partition and restore it under another name; the copy sums the same"
run backup "$db" users "$work/users.backup"
run restore "$db" "$work/users.backup" --as users-restored
run scan "$db" users-restored orders
run checksum "$db" users
run checksum "$db" users-restored

heading "Careless commands lose nothing: a backup over a database file, a move of a home behind the directory's back"
refused backup "$db" users "$db/users-restored.pdb" --force
refused put "$db" global homes alice us
run home get "$db" alice

heading "Delete a record, then compact the users partition"
run del "$db" users orders alice/0002
run compact "$db" users
run check "$db" users

heading "A cluster on this machine: eu-1 and eu-2 in region eu, us-1 in region us"
port=$((17000 + RANDOM % 400 * 10))
run cluster init "$work/cluster" --regions eu:2,us:1 --base-port "$port"
export PDB_TLS="$work/cluster/operator"
for host in eu-1 eu-2 us-1; do
    "$pdb" serve --config "$work/cluster/hosts/$host/config.json" 2>"$work/$host.log" &
    servers+=($!)
done
eu1="pdb://127.0.0.1:$port" eu2="pdb://127.0.0.1:$((port + 1))" us1="pdb://127.0.0.1:$((port + 2))"
for address in "$eu1" "$eu2" "$us1"; do
    for _ in $(seq 1 100); do "$pdb" info "$address" >/dev/null 2>&1 && break; sleep 0.1; done
done
echo "(three pdb serve processes started; PDB_TLS points pdb at the operator certificate)"

heading "Write on eu's primary over mutual TLS; the replica eu-2 receives every commit"
run home set "$eu1" alice eu
run put "$eu1" users profiles alice '{"name":"Alice"}' --owner alice
for _ in $(seq 1 100); do
    [[ "$("$pdb" checksum "$eu1" users --json)" == "$("$pdb" checksum "$eu2" users --json)" ]] && break
    sleep 0.1
done
run get "$eu2" users profiles alice
run checksum "$eu1" users
run checksum "$eu2" users

heading "A write on the replica eu-2 is forwarded to eu-1 and reads back on eu-2 at once"
run put "$eu2" users profiles alice '{"name":"Alice","city":"Lyon"}' --owner alice
run get "$eu2" users profiles alice
run home set "$us1" carol us
run home get "$eu2" carol

heading "The directory crosses the border, eu's users partition does not"
run home get "$us1" alice
refused get "$us1" users profiles alice
run replication status "$eu1"

heading "The same figures as Prometheus metrics, on eu-1's metrics address"
# cluster init gives the host on port P+i the metrics port P+3+i (three hosts).
metrics="http://127.0.0.1:$((port + 3))/metrics"
printf '$ curl -s %s | grep pdb_replica_durable_lsn\n' "$metrics"
if command -v curl >/dev/null; then
    curl -s "$metrics" | grep pdb_replica_durable_lsn
else
    echo "(curl is not installed; open $metrics in a browser)"
fi

heading "eu-1 dies; pdb promote makes eu-2 the primary of users at epoch 2"
kill -9 "${servers[0]}"
wait "${servers[0]}" 2>/dev/null || true
run promote "$eu2" users
run put "$eu2" users profiles alice '{"name":"Alice","city":"Porto"}' --owner alice
run get "$eu2" users profiles alice

heading "eu-1 restarted with its old configuration learns it is deposed and follows eu-2"
"$pdb" serve --config "$work/cluster/hosts/eu-1/config.json" 2>>"$work/eu-1.log" &
servers[0]=$!
for _ in $(seq 1 100); do
    [[ "$("$pdb" checksum "$eu1" users --json 2>/dev/null)" == "$("$pdb" checksum "$eu2" users --json)" ]] && break
    sleep 0.1
done
run get "$eu1" users profiles alice
run replication status "$eu1"

printf '\nTour finished; stopping the hosts and removing %s\n' "$work"
