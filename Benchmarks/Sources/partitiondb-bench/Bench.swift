#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `partitiondb-bench`: PartitionDB against SQLite and LMDB on redb's workload. See
/// Benchmarks/README.md.
@main
struct Bench {
    static let usage = """
        usage: partitiondb-bench [--engine partitiondb|sqlite|lmdb|all] [--records N] [--dir PATH]
                                 [--output FILE] [--seed S] [--runs R]

          --engine E     the engine to run (default all: each engine in a child process of its own,
                         so its peak memory is its own)
          --records N    records in the bulk load and point reads per pass (default 1,000,000)
          --dir PATH     where the databases go, one subdirectory per engine, removed after the run
                         (default /tmp/partitiondb-bench; use a real disk, not tmpfs)
          --output FILE  the JSON results (default with --engine all: Benchmarks/results/latest.json;
                         with one engine: none unless given)
          --seed S       the seed of the keys and values (default 3)
          --runs R       with all engines: R rounds, each running every engine once in turn; each
                         row reports the median of its R measurements (default 1)

        The Markdown table goes to stdout, progress to stderr.
        """

    static func main() {
        do {
            try run(BenchOptions.parse(Array(CommandLine.arguments.dropFirst())))
        } catch {
            printError("partitiondb-bench: \(error)\n")
            exit(1)
        }
    }

    static func run(_ options: BenchOptions) throws {
        if options.help {
            print(usage)
            return
        }
        let workload = Workload(records: options.records, seed: options.seed)
        try makeDirectories(options.directory)

        if let rowOutput = options.rowOutput {
            // A child of an `all` run: measure, hand the rows back, print nothing on stdout.
            guard let kind = options.engine else { throw BenchError.usage("--json-row-output needs one --engine") }
            let results = try Runner(workload: workload, kind: kind, directory: engineDirectory(options, kind)).run()
            try writeTextFile(rowOutput, RowFile.encode(results, engine: kind))
            return
        }

        var report = Report(machine: .current(), workload: workload, results: [:])
        report.runs = options.engine == nil ? options.runs : 1
        var failures: [BenchError] = []
        if let kind = options.engine {
            report.results[kind] = try Runner(workload: workload, kind: kind, directory: engineDirectory(options, kind))
                .run()
        } else {
            let executable = currentExecutable()
            // Rounds rather than one engine's runs back to back, so that a slow spell of the
            // machine falls on every engine alike.
            var runs: [EngineKind: [EngineResults]] = [:]
            for round in 1...options.runs {
                if options.runs > 1 { printError("round \(round) of \(options.runs)\n") }
                for kind in EngineKind.allCases {
                    let rowPath = options.directory + "/\(kind.rawValue).rows.jsonl"
                    try? removeTree(rowPath)
                    let status = try runChild(
                        executable,
                        [
                            "--engine", kind.rawValue, "--records", "\(options.records)", "--dir", options.directory,
                            "--seed", "\(options.seed)", "--json-row-output", rowPath,
                        ])
                    guard status == 0 else {
                        failures.append(.child(engine: kind.title, status: status))
                        continue
                    }
                    runs[kind, default: []].append(try RowFile.decode(try readTextFile(rowPath), path: rowPath))
                    try removeTree(rowPath)
                }
            }
            for (kind, results) in runs where results.count == options.runs {
                report.results[kind] = medians(results)
            }
        }

        print(
            "PartitionDB benchmark: \(grouped(options.records)) records (\(Workload.keySize)-byte keys, "
                + "\(Workload.valueSize)-byte values, seed \(options.seed)), every commit durable"
                + (options.runs > 1 ? "; each row the median of \(options.runs) runs." : "."))
        print(
            "Machine: \(report.machine.summary); SQLite \(report.machine.sqliteVersion), "
                + "LMDB \(report.machine.lmdbVersion).\n")
        print(report.markdown(), terminator: "")

        if let failure = failures.first {
            for other in failures.dropFirst() { printError("partitiondb-bench: \(other)\n") }
            // A partial run does not replace the results file.
            throw failure
        }
        if let output = options.output ?? (options.engine == nil ? defaultOutput : nil) {
            try makeDirectories(parentDirectory(output))
            try writeTextFile(output, report.json())
            printError("results written to \(output)\n")
        }
    }

    /// Each row's median over `runs` (the mean of the middle two for an even count).
    static func medians(_ runs: [EngineResults]) -> EngineResults {
        var result: EngineResults = [:]
        for row in Row.allCases {
            let values = runs.compactMap { $0[row] }.sorted()
            guard !values.isEmpty else { continue }
            let middle = values.count / 2
            result[row] = values.count % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2
        }
        return result
    }

    static func engineDirectory(_ options: BenchOptions, _ kind: EngineKind) -> String {
        options.directory + "/" + kind.rawValue
    }

    /// Benchmarks/results/latest.json, found from this source file's place in the package.
    static var defaultOutput: String {
        let sources = parentDirectory(parentDirectory(#filePath))
        let package = parentDirectory(sources)
        return isDirectory(package) ? package + "/results/latest.json" : "results/latest.json"
    }
}

/// The command line. No argument parser library: it would add to each engine's peak memory.
struct BenchOptions {
    /// nil: all engines.
    var engine: EngineKind? = nil
    var records = Workload.defaultRecords
    var directory = "/tmp/partitiondb-bench"
    var output: String? = nil
    var seed = Workload.defaultSeed
    /// Rounds of an `all` run; each row reports its median.
    var runs = 1
    /// Set only in the child processes of an `all` run.
    var rowOutput: String? = nil
    var help = false

    static func parse(_ arguments: [String]) throws -> BenchOptions {
        var options = BenchOptions()
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            var name = argument
            var inlineValue: String? = nil
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                inlineValue = String(argument[argument.index(after: equals)...])
            }
            func value() throws -> String {
                if let inlineValue { return inlineValue }
                guard let next = rest.popFirst() else { throw BenchError.usage("\(name) needs a value") }
                return next
            }
            switch name {
            case "--engine":
                let text = try value()
                if text == "all" {
                    options.engine = nil
                } else {
                    guard let kind = EngineKind(rawValue: text) else {
                        throw BenchError.usage("unknown engine \(text): use partitiondb, sqlite, lmdb or all")
                    }
                    options.engine = kind
                }
            case "--records":
                let text = try value()
                guard let records = Int(text.filter { $0 != "_" && $0 != "," }), records >= 2 else {
                    throw BenchError.usage("--records takes a whole number of at least 2, not \(text)")
                }
                options.records = records
            case "--dir":
                options.directory = try value()
                guard !options.directory.isEmpty else { throw BenchError.usage("--dir needs a path") }
                while options.directory.count > 1 && options.directory.hasSuffix("/") {
                    options.directory.removeLast()
                }
            case "--output": options.output = try value()
            case "--seed":
                let text = try value()
                guard let seed = UInt64(text) else {
                    throw BenchError.usage("--seed takes a whole number, not \(text)")
                }
                options.seed = seed
            case "--runs":
                let text = try value()
                guard let runs = Int(text), runs >= 1, runs <= 99 else {
                    throw BenchError.usage("--runs takes a whole number from 1 to 99, not \(text)")
                }
                options.runs = runs
            case "--json-row-output": options.rowOutput = try value()
            case "--help", "-h": options.help = true
            default: throw BenchError.usage("unknown argument \(argument)")
            }
        }
        return options
    }
}
