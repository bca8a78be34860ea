#!/usr/bin/env bash
# Builds the libFuzzer targets of Fuzz/Targets and runs each for a bounded time on its seed corpus.
# Method and figures: spec/testing.md#fuzzing
#
#   Fuzz/run.sh [SECONDS] [TARGET...]   run each target (default: all) for SECONDS (default 60)
#   Fuzz/run.sh build                    only build the targets
#   Fuzz/run.sh seeds                    regenerate the partition and log seeds in Fuzz/corpus
#   Fuzz/run.sh repro TARGET FILE...     run a target once on the given inputs (a crash reproducer)
#
# Targets: partition (a partition file), log (a write-ahead log), apply (`pdb apply` input),
# protocol (frames from a peer, spec/replication.md).
# New corpus entries go to Fuzz/out/TARGET/corpus and crashes to Fuzz/out/TARGET/ (crash-*,
# timeout-*, oom-*); Fuzz/out is git-ignored. A crash that is fixed is added to
# Fuzz/corpus/TARGET/ as a regression input.
#
# The package's C targets, the engine, Residency and (for apply) the sources of `pdb` but PDB.swift
# are compiled as modules with ASan and coverage; swift-argument-parser without instrumentation.
# Build folder: $FUZZ_BUILD (default .build-fuzz). Prints one line per target and a total, and
# exits 1 when any target crashed (a regression input in Fuzz/corpus that still fails counts):
#   fuzz partition: executions 123456, crashes 0 (60 s; log Fuzz/out/partition/last-run.log)
#   fuzz executions: 370000, crashes: 0
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${FUZZ_BUILD:-.build-fuzz}
modules=$build/modules
swiftc=${SWIFTC:-swiftc}
all_targets=(partition log apply protocol)
mkdir -p "$modules"

# Swift files under a folder (some folder names have spaces), one per line.
sources() { find "$@" -name '*.swift' -print | LC_ALL=C sort; }

# Whether $1 is missing or older than any of the remaining files.
stale() {
    local output=$1
    shift
    [[ ! -e $output ]] && return 0
    local file
    for file in "$@"; do [[ $file -nt $output ]] && return 0; done
    return 1
}

optimize=(-O -g -assert-config Debug -parse-as-library -package-name partitiondb)
instrument=(-sanitize=fuzzer,address)
# The engine gets coverage without comparison tracing: traced comparisons in the CRC-32C loop cost
# about half of every execution (every page read is checksummed). FUZZ_TRACE_CMP=1 puts it back.
engine_instrument=(-sanitize=address -sanitize-coverage=edge,indirect-calls,inline-8bit-counters,pc-table)
[[ ${FUZZ_TRACE_CMP:-0} == 1 ]] && engine_instrument=("${instrument[@]}")

# The package's C targets (folders of Sources with an include/ folder): compiled with clang and
# ASan, each given a module map; and its system library targets (folders with a module.modulemap).
c_objects=()
c_includes=()
build_c_targets() {
    local dir name header source object
    for dir in Sources/*/; do
        dir=${dir%/}
        name=$(basename "$dir")
        if [[ -f $dir/module.modulemap ]]; then
            c_includes+=(-I "$dir")
            continue
        fi
        [[ -d $dir/include ]] || continue
        mkdir -p "$build/cmodules/$name"
        {
            echo "module $name {"
            for header in "$dir"/include/*.h; do echo "    header \"$root/$header\""; done
            echo "    export *"
            echo "}"
        } >"$build/cmodules/$name/module.modulemap"
        c_includes+=(-I "$build/cmodules/$name")
        while IFS= read -r source; do
            object=$build/c-$name-$(basename "$source" .c).o
            if stale "$object" "$source" "$dir"/include/*.h; then
                echo "building $source" >&2
                "${CLANG:-clang}" -O2 -g -fsanitize=address -I "$dir/include" -c "$source" -o "$object"
            fi
            c_objects+=("$object")
        done < <(find "$dir" -name '*.c' | LC_ALL=C sort)
    done
}

# One Swift module as an object file plus its .swiftmodule: module name, extra flags, sources.
build_module() {
    local name=$1
    local -n flags=$2
    shift 2
    if stale "$build/$name.o" "$@" "$0"; then
        echo "building module $name" >&2
        "$swiftc" "${optimize[@]}" "${flags[@]}" -module-name "$name" -wmo -c "$@" \
            -I "$modules" "${c_includes[@]}" -emit-module -emit-module-path "$modules/$name.swiftmodule" \
            -o "$build/$name.o"
    fi
}

argument_parser_checkout() {
    local candidate
    for candidate in "$build/checkouts" .build/checkouts .build-*/checkouts; do
        if [[ -d $candidate/swift-argument-parser/Sources/ArgumentParser ]]; then
            echo "$candidate/swift-argument-parser"
            return
        fi
    done
    swift package resolve --scratch-path "$build" >&2
    echo "$build/checkouts/swift-argument-parser"
}

build_all() {
    build_c_targets
    local engine_flags=("${engine_instrument[@]}" -enable-testing -swift-version 6)
    # swift-argument-parser is neither fuzzed nor hot: unoptimized, it builds in a fraction of
    # the time (the whole fuzz build took about 7 minutes of CI with it optimized).
    local plain_flags=(-swift-version 5 -suppress-warnings -Onone)
    mapfile -t engine < <(sources Sources/PartitionDB)
    build_module PartitionDB engine_flags "${engine[@]}"
    # The layers of Residency without SwiftNIO: the directory, the audit, the wire protocol, the retained-log
    # segment format, and the configuration reader the directory's country policy uses.
    mapfile -t residency < <(sources Sources/Residency/Directory Sources/Residency/Protocol Sources/Residency/Retention Sources/Residency/Audit Sources/Residency/ResidencyError.swift Sources/Residency/Cluster/ConfigurationReader.swift Sources/Residency/Cluster/PeerIdentity.swift)
    build_module Residency engine_flags "${residency[@]}"
    local parser
    parser=$(argument_parser_checkout)
    mapfile -t toolinfo < <(sources "$parser/Sources/ArgumentParserToolInfo")
    build_module ArgumentParserToolInfo plain_flags "${toolinfo[@]}"
    mapfile -t argumentparser < <(sources "$parser/Sources/ArgumentParser")
    build_module ArgumentParser plain_flags "${argumentparser[@]}"

    local support=(Fuzz/Support/FuzzSupport.swift)
    link() {
        local output=$1 version=$2
        shift 2
        local target_flags=("${optimize[@]}" "${instrument[@]}" -swift-version "$version" -I "$modules" "${c_includes[@]}")
        if stale "$output" "$@" "$0"; then
            echo "building $(basename "$output")" >&2
            rm -f "$output"
            # gold's "Cannot export local symbol '__asan_...'" lines are noise of the ASan runtime.
            "$swiftc" "${target_flags[@]}" "$@" "${c_objects[@]}" -lzstd -o "$output" 2>&1 | grep -v "Cannot export local symbol" >&2 || true
            [[ -x $output ]] || { echo "building $output failed" >&2; exit 1; }
        fi
    }
    link "$build/fuzz-partition" 6 -module-name FuzzPartition Fuzz/Targets/PartitionFuzz.swift "${support[@]}" \
        "$build/PartitionDB.o"
    link "$build/fuzz-log" 6 -module-name FuzzLog Fuzz/Targets/LogFuzz.swift Fuzz/Support/LogBase.swift \
        Fuzz/Support/Seeds.swift "${support[@]}" "$build/PartitionDB.o"
    link "$build/fuzz-protocol" 6 -module-name FuzzProtocol Fuzz/Targets/ProtocolFuzz.swift \
        "$build/PartitionDB.o" "$build/Residency.o"
    # `pdb` without PDB.swift: its @main would clash with libFuzzer's main. Swift 5 mode, because
    # the target reopens the C global `stdin`, which Swift 6 refuses to touch.
    # Without the host commands, the shell (libedit), `keys` (Auth, with jwt-kit, is not built
    # here) and `erase` (it also erases through a running host, whose layer is not built here).
    mapfile -t pdb < <(sources Sources/pdb | grep -v -e '/PDB.swift$' -e '/Host/' -e '/Shell/' -e '/Commands/Keys.swift$' -e '/Commands/Erase.swift$')
    link "$build/fuzz-apply" 5 -module-name pdb Fuzz/Targets/ApplyFuzz.swift "${support[@]}" "${pdb[@]}" \
        "$build/PartitionDB.o" "$build/Residency.o" "$build/ArgumentParser.o" "$build/ArgumentParserToolInfo.o"
}

# Per-target libFuzzer options: input size limit and, for apply, a dictionary of JSON tokens.
options_for() {
    case $1 in
        partition) echo "-max_len=131072" ;;
        log) echo "-max_len=131072" ;;
        apply) echo "-max_len=20000 -dict=Fuzz/apply.dict" ;;
        protocol) echo "-max_len=65536" ;;
    esac
}

# Regression inputs: Fuzz/corpus/TARGET/crash-* (and oom-*, timeout-*) are inputs that once failed.
# Each runs once first; one that still fails counts as a crash. The others are seeds like the rest.
is_finding() { [[ $(basename "$1") =~ ^(crash|oom|timeout)- ]]; }

run_target() {
    local target=$1 seconds=$2
    local out=Fuzz/out/$target
    mkdir -p "$out/corpus"
    rm -rf "$out/seeds"
    mkdir -p "$out/seeds"
    local log=$out/last-run.log
    local known=0 file failing=()
    for file in Fuzz/corpus/"$target"/*; do
        if is_finding "$file"; then
            if ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} SWIFT_BACKTRACE=enable=no "$build/fuzz-$target" $(options_for "$target") \
                -timeout=20 -rss_limit_mb=2048 "$file" >"$out/regression.log" 2>&1; then
                cp "$file" "$out/seeds/"
            else
                known=$((known + 1))
                failing+=("$(basename "$file")")
            fi
        else
            cp "$file" "$out/seeds/"
        fi
    done
    local before
    before=$(find "$out" -maxdepth 1 \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    # Fork mode: the fuzzing runs in a child process that is restarted after a crash, an
    # out-of-memory or a timeout, so one finding does not end the run; each is saved and counted.
    # The leak check at exit reports allocations of Foundation that live as long as the process.
    # shellcheck disable=SC2046
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} SWIFT_BACKTRACE=enable=no "$build/fuzz-$target" \
        $(options_for "$target") -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -artifact_prefix="$out/" \
        "$out/corpus" "$out/seeds" >"$log" 2>&1 || true
    local after executions counts
    after=$(find "$out" -maxdepth 1 \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    # Progress lines: "#4770: cov: 2843 ft: 9777 corp: 243 exec/s: 72 oom/timeout/crash: 0/0/2 ...".
    executions=$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "$log" | tail -1)
    executions=${executions:-0}
    counts=$(sed -n 's/.*oom\/timeout\/crash: \([0-9]*\)\/\([0-9]*\)\/\([0-9]*\).*/\1 \2 \3/p' "$log" | tail -1)
    read -r ooms timeouts failures <<<"${counts:-0 0 0}"
    local found=$((ooms + timeouts + failures))
    local distinct=$((after - before))
    local crashes=$((found + known))
    local notes="${seconds} s; log $log"
    ((found > 0)) && notes+="; $ooms out-of-memory, $timeouts timeouts, $failures crashes, new inputs: $(ls -t "$out" | grep -E '^(crash|timeout|oom)-' | head -n "$distinct" | tr '\n' ' ')"
    ((known > 0)) && notes+="; still failing in Fuzz/corpus/$target: ${failing[*]}"
    echo "fuzz $target: executions $executions, crashes $crashes ($notes)"
    total_executions=$((total_executions + executions))
    total_crashes=$((total_crashes + crashes))
}

case ${1:-} in
    build)
        build_all
        ;;
    seeds)
        build_all
        PDB_FUZZ_WRITE_SEEDS=Fuzz/corpus "$build/fuzz-log"
        ;;
    repro)
        target=$2
        shift 2
        build_all
        ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} SWIFT_BACKTRACE=enable=no \
            "$build/fuzz-$target" $(options_for "$target") "$@"
        ;;
    *)
        seconds=60
        if [[ ${1:-} =~ ^[0-9]+$ ]]; then
            seconds=$1
            shift
        fi
        targets=("$@")
        ((${#targets[@]} == 0)) && targets=("${all_targets[@]}")
        build_all
        total_executions=0
        total_crashes=0
        for target in "${targets[@]}"; do run_target "$target" "$seconds"; done
        echo "fuzz executions: $total_executions, crashes: $total_crashes"
        # A finding fails the run, old ones still failing included: they are bugs to fix.
        ((total_crashes == 0)) || exit 1
        ;;
esac
