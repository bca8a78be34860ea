#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The engines the benchmark compares.
enum EngineKind: String, CaseIterable, Sendable {
    case partitiondb
    case sqlite
    case lmdb

    /// The column heading.
    var title: String {
        switch self {
        case .partitiondb: return "PartitionDB"
        case .sqlite: return "SQLite"
        case .lmdb: return "LMDB"
        }
    }

    /// Creates a fresh database of this engine in `directory`, which must not exist.
    func make(directory: String, workload: Workload) throws -> any Engine {
        switch self {
        case .partitiondb: return try PartitionDBEngine(directory: directory, workload: workload)
        case .sqlite: return try SQLiteEngine(directory: directory, workload: workload)
        case .lmdb: return try LMDBEngine(directory: directory, workload: workload)
        }
    }
}

/// One engine under test, driven by `Runner`. Every write is one transaction committed durably.
///
/// The loops over records sit inside the engines, so each engine calls its own API the way a
/// user of it would (C engines fill reusable buffers; PartitionDB takes arrays).
protocol Engine: AnyObject {
    /// Inserts the workload's records `records` in one durable write transaction.
    func insert(_ records: Range<Int>) throws
    /// The number of records, in a read transaction.
    func count() throws -> Int
    /// A reader for one thread. Setting it up (connections, statements) is not timed.
    func makeReader() throws -> any Reader
    /// Removes the records `records` in one durable write transaction; returns how many existed.
    func remove(_ records: Range<Int>) throws -> Int
    /// Compacts the database and returns the directory whose files now hold it (LMDB's compaction
    /// writes a copy elsewhere).
    func compact() throws -> String
    /// Closes the database. No reader may be open.
    func close() throws
}

/// Reads for one thread. Each call is one read transaction (snapshot).
protocol Reader: AnyObject, Sendable {
    /// Reads the workload's records `records` by key, in index order (random key order), and
    /// checks each value.
    func read(_ records: Range<Int>) throws -> ReadTally
    /// For each record of `records`: seeks to its key and reads up to `length` entries forward,
    /// checking the first key and every value.
    func readRanges(_ records: Range<Int>, length: Int) throws -> ReadTally
    func close()
}

/// Why a run failed.
enum BenchError: Error, CustomStringConvertible {
    case usage(String)
    case engine(engine: String, operation: String, detail: String)
    case verification(engine: String, operation: String, detail: String)
    case system(operation: String, path: String, errno: Int32)
    case child(engine: String, status: Int32)

    var description: String {
        switch self {
        case .usage(let message):
            return "\(message)\nRun with --help for the options."
        case .engine(let engine, let operation, let detail):
            return "\(engine) failed while \(operation): \(detail)"
        case .verification(let engine, let operation, let detail):
            return "\(engine) returned wrong data in \(operation): \(detail). The numbers of this run are not valid."
        case .system(let operation, let path, let errno):
            return "\(operation) failed for \(path): \(String(cString: strerror(errno))) (errno \(errno))"
        case .child(let engine, let status):
            return "the \(engine) run (a child process) exited with status \(status); its output is above"
        }
    }
}
