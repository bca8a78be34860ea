#!/usr/bin/env bash
# Issue 3's reliability harness in one command (spec/testing.md): simulated power loss, real
# process kills, I/O faults, bit flips, the randomized model test, AddressSanitizer and
# ThreadSanitizer runs, and libFuzzer. Prints one summary line per kind at the end and exits
# non-zero when any part failed.
#
#   scripts/reliability.sh full   `make reliability`: larger counts than CI (knobs below)
#   scripts/reliability.sh ci     `make reliability-ci`: ASan run of the engine suite (which runs
#                                 the crash, kill, fault and bit-flip tests at their CI counts),
#                                 TSan run of the concurrency tests, each fuzz target 60 s
#
# Knobs (environment): PDB_CRASH_STATES, PDB_KILLS, PDB_BITFLIPS, PDB_MODEL_OPS (the large run
# of `full`), PDB_ASAN_CRASH_STATES, PDB_ASAN_KILLS, PDB_ASAN_BITFLIPS, PDB_ASAN_MODEL_OPS (the
# ASan run), FUZZ_SECONDS (per fuzz target), and the tests' seeds (PDB_*_SEED). Logs go to
# $RELIABILITY_LOGS (default .build-reliability/logs).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-full}
logs=${RELIABILITY_LOGS:-.build-reliability/logs}
mkdir -p "$logs"
failed=()
started=$(date +%s)
timings=()

# Runs a step, its output into logs/NAME.log, and records its time and failure.
step() {
    local name=$1
    shift
    local begin=$(date +%s)
    echo "== $name: $*"
    if "$@" >"$logs/$name.log" 2>&1; then
        echo "   ok ($(($(date +%s) - begin)) s)"
    else
        echo "   FAILED ($(($(date +%s) - begin)) s); see $logs/$name.log; its last lines:"
        # CI keeps only this output, not the logs: the end of the log says what failed.
        tail -n 80 "$logs/$name.log" | sed 's/^/   | /'
        failed+=("$name")
    fi
    timings+=("$name $(($(date +%s) - begin)) s")
}

# The engine's suite under AddressSanitizer (`PDB_ENGINE_ONLY=1`, Package.swift: the engine and
# its tests without swift-nio and swift-nio-ssl, whose second sanitizer build CI cannot afford;
# the protocol decoder is covered by its fuzz target, which runs under ASan). The randomized tests run with the counts in
# asan_counts (ASan makes them 2-4 times slower; `make test` runs them at their CI counts). The
# leak check is off: the leaks it reports at exit are Foundation's (Data(contentsOf:), Process)
# and XCTest's teardown blocks, none in the engine (spec/testing.md#sanitizers).
asan_tests() {
    PDB_ENGINE_ONLY=1 swift build --build-tests --sanitize=address --scratch-path .build-asan &&
        env "${asan_counts[@]}" PDB_ENGINE_ONLY=1 ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} \
            swift test --skip-build --sanitize=address --scratch-path .build-asan
}

tsan_tests() {
    swift build --build-tests --sanitize=thread --scratch-path .build-tsan &&
        TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1} swift test --skip-build --sanitize=thread \
            --scratch-path .build-tsan --filter 'ConcurrencyTests|GroupCommitTests|ResidencyDirectoryTests|PasswordTests|AuthenticatorTests'
}

# The reliability tests of the ordinary debug build, with larger counts.
large_tests() {
    swift build --build-tests --scratch-path .build-reliability &&
        PDB_CRASH_STATES=${PDB_CRASH_STATES:-100000} PDB_KILLS=${PDB_KILLS:-1000} \
            PDB_BITFLIPS=${PDB_BITFLIPS:-5000} PDB_MODEL_OPS=${PDB_MODEL_OPS:-400000} \
            swift test --skip-build --scratch-path .build-reliability \
            --filter 'CrashTests|FaultTests|KillTests|BitFlipTests|ModelTests|CorruptionTests'
}

case $mode in
    full)
        asan_counts=(PDB_MODEL_OPS=${PDB_ASAN_MODEL_OPS:-50000} PDB_KILLS=${PDB_ASAN_KILLS:-200}
            PDB_CRASH_STATES=${PDB_ASAN_CRASH_STATES:-10500} PDB_BITFLIPS=${PDB_ASAN_BITFLIPS:-600})
        step large-tests large_tests
        step asan asan_tests
        step tsan tsan_tests
        step fuzz Fuzz/run.sh "${FUZZ_SECONDS:-600}"
        counted=$logs/large-tests.log
        ;;
    ci)
        asan_counts=(PDB_MODEL_OPS=${PDB_ASAN_MODEL_OPS:-20000} PDB_KILLS=${PDB_ASAN_KILLS:-50}
            PDB_CRASH_STATES=${PDB_ASAN_CRASH_STATES:-2000} PDB_BITFLIPS=${PDB_ASAN_BITFLIPS:-200})
        step asan asan_tests
        step tsan tsan_tests
        step fuzz Fuzz/run.sh "${FUZZ_SECONDS:-60}"
        counted=$logs/asan.log
        ;;
    *)
        echo "usage: $0 full|ci" >&2
        exit 64
        ;;
esac

# Sums the two numbers of every line "PREFIX X, WORD: Y" in a log.
sum_pairs() {
    local prefix=$1 file=$2
    sed -n "s/^$prefix \\([0-9]*\\), [a-z ]*: \\([0-9]*\\).*/\\1 \\2/p" "$file" 2>/dev/null |
        awk '{ x += $1; y += $2 } END { printf "%d %d", x, y }'
}

# The number of tests and failures XCTest reports for a log.
tests_line() {
    sed -n 's/.*Executed \([0-9]*\) tests\{0,1\}, with \([0-9]*\) failures\{0,1\}.*/\1 tests, \2 failures/p' "$1" 2>/dev/null |
        tail -1
}

echo
echo "== summary ($mode, $(($(date +%s) - started)) s; logs in $logs)"
read -r explored passed <<<"$(sum_pairs 'crash states explored:' "$counted")"
echo "crash states explored: $explored, passed: $passed"
read -r kills lost <<<"$(sum_pairs 'kills:' "$counted")"
echo "kills: $kills, acknowledged commits lost: $lost"
# FaultTests prints one line per test and a total for the class; take the total when it is there.
if grep -q '^faults injected: .*(all fault tests)' "$counted" 2>/dev/null; then
    faults=$(grep '^faults injected: .*(all fault tests)' "$counted" | tail -1 | sed 's/ (all fault tests)//')
    echo "$faults"
else
    read -r injected handled <<<"$(sum_pairs 'faults injected:' "$counted")"
    echo "faults injected: $injected, handled: $handled"
fi
grep '^bit flips injected:' "$counted" 2>/dev/null | tail -1 || echo "bit flips injected: 0, detected: 0"
grep '^fuzz executions:' "$logs/fuzz.log" 2>/dev/null | tail -1 || echo "fuzz executions: 0, crashes: 0"
grep '^fuzz [a-z]*: executions' "$logs/fuzz.log" 2>/dev/null | sed 's/ (.*//; s/^/  /'
echo "address sanitizer (engine suite): $(tests_line "$logs/asan.log")"
echo "thread sanitizer (concurrency tests): $(tests_line "$logs/tsan.log")"
[[ $mode == full ]] && echo "large counts (debug build): $(tests_line "$logs/large-tests.log")"
for timing in "${timings[@]}"; do echo "  time: $timing"; done
if ((${#failed[@]} > 0)); then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
