import Foundation
import Logging

/// `partitiondb-replication-bench`: PartitionDB's log shipping against PostgreSQL 15's streaming
/// replication, side by side in one run. See Benchmarks/README.md#replication.
@main
struct ReplicationBench {
    static let usage = """
        usage: partitiondb-replication-bench [--quick] [--runs R] [--dir PATH] [--output FILE]
                                             [--pdb PATH] [--pg-bin DIR] [--only partitiondb|postgresql]
                                             [--seconds S] [--steady-seconds S] [--rates R1,R2]
                                             [--catch-up-mib M] [--catch-up-records N] [--catch-up-only]
                                             [--keep] [--verbose]

          --quick               2-second phases and a 100 MiB catch-up: for checking a change
          --runs R              rounds; each row reports its median (default 3; quick 1)
          --dir PATH            the work folder, which must not exist; removed after the run
                                (default /tmp/partitiondb-replication-bench; use a real disk)
          --output FILE         the JSON results (default Benchmarks/results/replication-latest.json)
          --pdb PATH            the pdb executable for the replica (default: next to this one;
                                build it with swift build -c release --package-path Benchmarks --product pdb)
          --pg-bin DIR          PostgreSQL 15's programs (default /usr/lib/postgresql/15/bin)
          --only SYSTEM         run one side only (no ratios)
          --seconds S           each unpaced throughput phase (default 5; quick 2)
          --steady-seconds S    each steady-rate phase (default 5; quick 2)
          --rates R1,R2         the steady rates in commits a second (default 2000,5000)
          --catch-up-mib M      the partition a new replica catches up (default 1024; quick 100)
          --catch-up-records N  load N records instead (default: as many as make M MiB of partition file)
          --catch-up-only       only the catch-up rows (no throughput or steady-rate phases)
          --keep                keep the work folder (data, logs)
          --verbose             the primary host's log at info level on stderr

        The Markdown table goes to stdout, progress to stderr.
        """

    static func main() {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .trace
            return handler
        }
        var options = Options()
        do {
            options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
            if options.help {
                print(usage)
                return
            }
            try run(options)
        } catch {
            Children.shared.stopAll()
            printError("partitiondb-replication-bench: \(error)\n")
            if FileManager.default.fileExists(atPath: options.directory) {
                printError("the work folder \(options.directory) is kept for its logs; remove it before the next run\n")
            }
            exit(1)
        }
    }

    static func run(_ options: Options) throws {
        let settings = options.settings
        let pg = options.pgBin
        for program in ["initdb", "postgres", "pg_basebackup", "pgbench", "psql", "pg_isready"]
        where settings.only != .partitiondb {
            guard FileManager.default.isExecutableFile(atPath: pg + "/" + program) else {
                throw ReplicationBenchError.setup(
                    "\(pg)/\(program) is missing: install Debian's postgresql-15 (Benchmarks/install-deps.sh)")
            }
        }
        guard settings.only == .postgresql || FileManager.default.isExecutableFile(atPath: options.pdb) else {
            throw ReplicationBenchError.setup(
                "\(options.pdb) is missing: swift build -c release --package-path Benchmarks --product pdb")
        }
        let runAs = try settings.only == .partitiondb ? nil : RunAs.postgresIfRoot()
        let root = options.directory
        guard !FileManager.default.fileExists(atPath: root) else {
            throw ReplicationBenchError.usage(
                "\(root) exists (left by an interrupted run?); remove it, or pick another --dir")
        }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        // PostgreSQL's account walks through it to its own folders.
        chmod(root, 0o755)
        let signals = stopOnSignals(removing: options.keep ? nil : root)
        defer { signals.forEach { $0.cancel() } }

        let machine = MachineInfo.current(postgres: pg + "/postgres", packageDirectory: packageDirectory)
        printError("machine: \(machine.summary)\n")
        var rounds: [RoundResults] = []
        var order: [[System]] = []
        var records = options.catchUpRecords
        for round in 1...settings.runs {
            // Alternating order, so that what one side leaves behind (dirty pages, a busy disk)
            // falls on both; the first round starts with PartitionDB, whose load sets the
            // catch-up's record count for both sides.
            var systems: [System] = round % 2 == 1 ? [.partitiondb, .postgresql] : [.postgresql, .partitiondb]
            if let only = settings.only { systems = [only] }
            order.append(systems)
            printError("round \(round) of \(settings.runs): \(systems.map(\.title).joined(separator: ", then "))\n")
            let directory = root + "/round-\(round)"
            var results = RoundResults()
            for system in systems where !settings.catchUpOnly {
                switch system {
                case .partitiondb:
                    try side(directory, runAs, options, settings).partitiondb.runStreaming(into: &results)
                case .postgresql:
                    try side(directory, runAs, options, settings).postgresql.runStreaming(into: &results)
                }
            }
            for system in systems {
                switch system {
                case .partitiondb:
                    records = try side(directory, runAs, options, settings).partitiondb.runCatchUp(
                        records: records, into: &results)
                case .postgresql:
                    let count = records ?? settings.catchUpBytes / 300
                    records = count
                    try side(directory, runAs, options, settings).postgresql.runCatchUp(
                        records: count, into: &results)
                }
            }
            rounds.append(results)
            if !options.keep { try FileManager.default.removeItem(atPath: directory) }
        }

        let report = Report(settings: settings, machine: machine, records: records ?? 0, rounds: rounds, order: order)
        print(
            "PartitionDB log shipping against PostgreSQL 15 streaming replication, on loopback with TLS: one writer, "
                + "one durable transaction per insert of a \(Records.keySize)-byte key and a \(Records.valueSize)-byte "
                + "value; throughput phases of \(fixed(settings.seconds, 0)) s, steady rates for "
                + "\(fixed(settings.steadySeconds, 0)) s, a new replica catching up \(grouped(records ?? 0)) records"
                + (settings.runs > 1 ? "; each row the median of \(settings.runs) rounds." : "."))
        print("Machine: \(machine.summary).\n")
        print(report.markdown(), terminator: "")
        let output = options.output ?? defaultOutput
        try FileManager.default.createDirectory(
            atPath: (output as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try report.json().write(toFile: output, atomically: true, encoding: .utf8)
        printError("results written to \(output)\n")
        if !options.keep { try FileManager.default.removeItem(atPath: root) }
    }

    private static func side(_ directory: String, _ runAs: RunAs?, _ options: Options, _ settings: Settings)
        -> (partitiondb: PartitionDBSide, postgresql: PostgreSQLSide)
    {
        (
            PartitionDBSide(settings: settings, pdb: options.pdb, directory: directory + "/partitiondb"),
            PostgreSQLSide(settings: settings, bin: options.pgBin, runAs: runAs, directory: directory + "/postgresql")
        )
    }

    /// On SIGINT or SIGTERM: stop every server started, remove the work folder, exit 130.
    private static func stopOnSignals(removing root: String?) -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                printError("partitiondb-replication-bench: signal \(number); stopping the servers\n")
                Children.shared.stopAll()
                if let root { try? FileManager.default.removeItem(atPath: root) }
                exit(130)
            }
            source.resume()
            return source
        }
    }

    /// The Benchmarks package folder, found from this source file's place in it.
    static var packageDirectory: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    static var defaultOutput: String { packageDirectory + "/results/replication-latest.json" }
}

/// The command line. As in the engine benchmark, no argument parser library.
struct Options {
    var settings = Settings()
    var directory = "/tmp/partitiondb-replication-bench"
    var output: String? = nil
    var pdb = URL(fileURLWithPath: currentExecutable()).deletingLastPathComponent().appendingPathComponent("pdb").path
    var pgBin = "/usr/lib/postgresql/15/bin"
    var catchUpRecords: Int? = nil
    var keep = false
    var help = false

    static func parse(_ arguments: [String]) throws -> Options {
        var options = Options()
        var explicit: Set<String> = []
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            var name = argument
            var inline: String? = nil
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                inline = String(argument[argument.index(after: equals)...])
            }
            func value() throws -> String {
                if let inline { return inline }
                guard let next = rest.popFirst() else { throw ReplicationBenchError.usage("\(name) needs a value") }
                return next
            }
            func whole(_ range: ClosedRange<Int>) throws -> Int {
                let text = try value()
                guard let number = Int(text.filter { $0 != "_" && $0 != "," }), range.contains(number) else {
                    throw ReplicationBenchError.usage(
                        "\(name) takes a whole number from \(range.lowerBound) to \(range.upperBound), not \(text)")
                }
                return number
            }
            explicit.insert(name)
            switch name {
            case "--quick": options.settings.quick = true
            case "--runs": options.settings.runs = try whole(1...99)
            case "--dir":
                options.directory = try value()
                guard options.directory.hasPrefix("/") else {
                    throw ReplicationBenchError.usage("--dir takes an absolute path")
                }
            case "--output": options.output = try value()
            case "--pdb": options.pdb = try value()
            case "--pg-bin": options.pgBin = try value()
            case "--only":
                let text = try value()
                guard let system = System(rawValue: text) else {
                    throw ReplicationBenchError.usage("--only takes partitiondb or postgresql, not \(text)")
                }
                options.settings.only = system
            case "--seconds": options.settings.seconds = Double(try whole(1...600))
            case "--steady-seconds": options.settings.steadySeconds = Double(try whole(2...600))
            case "--rates":
                let text = try value()
                let rates = text.split(separator: ",").compactMap { Int($0) }
                guard !rates.isEmpty, rates.count == text.split(separator: ",").count,
                    rates.allSatisfy({ (1...1_000_000).contains($0) })
                else { throw ReplicationBenchError.usage("--rates takes commits a second, e.g. 2000,5000") }
                options.settings.rates = rates
            case "--catch-up-mib": options.settings.catchUpBytes = try whole(1...65_536) << 20
            case "--catch-up-records": options.catchUpRecords = try whole(1...1_000_000_000)
            case "--catch-up-only": options.settings.catchUpOnly = true
            case "--keep": options.keep = true
            case "--verbose": options.settings.verbose = true
            case "--help", "-h": options.help = true
            default: throw ReplicationBenchError.usage("unknown argument \(argument)")
            }
        }
        if options.settings.quick {
            if !explicit.contains("--runs") { options.settings.runs = 1 }
            if !explicit.contains("--seconds") { options.settings.seconds = 2 }
            if !explicit.contains("--steady-seconds") { options.settings.steadySeconds = 2 }
            if !explicit.contains("--catch-up-mib") { options.settings.catchUpBytes = 100 << 20 }
        }
        return options
    }
}

/// Why a run failed.
enum ReplicationBenchError: Error, CustomStringConvertible {
    case usage(String)
    case setup(String)
    case timeout(String)
    case command(label: String, status: Int32, output: String)
    case verification(String)
    case system(operation: String, path: String, errno: Int32)

    var description: String {
        switch self {
        case .usage(let message): return "\(message)\nRun with --help for the options."
        case .setup(let message): return message
        case .timeout(let message): return "timed out: \(message)"
        case .command(let label, let status, let output): return "\(label) exited with status \(status):\n\(output)"
        case .verification(let message): return "wrong result, the numbers of this run are not valid: \(message)"
        case .system(let operation, let path, let errno):
            return "\(operation) failed for \(path): \(String(cString: strerror(errno))) (errno \(errno))"
        }
    }
}

/// The path of the running executable.
func currentExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}
