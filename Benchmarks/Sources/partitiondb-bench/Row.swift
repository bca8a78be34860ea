/// One row of the results table: an operation of the workload, or a size.
enum Row: String, CaseIterable, Sendable {
    case bulkLoad = "bulk load"
    case individualWrites = "individual writes"
    case batchWrites = "batch writes"
    case count = "count"
    case randomReads = "random reads (1 thread)"
    case randomReadsAgain = "random reads (1 thread, 2nd pass)"
    case randomReadsTwoThreads = "random reads (2 threads)"
    case randomReadsTwoThreadsAgain = "random reads (2 threads, 2nd pass)"
    case rangeReads = "random range reads"
    case removals = "removals"
    case compaction = "compaction"
    case sizeAfterLoad = "file size after load"
    case sizeAfterRemovals = "file size after removals"
    case sizeAfterCompaction = "file size after compaction"
    case peakMemory = "peak resident memory"

    enum Unit: String, Sendable {
        case milliseconds = "ms"
        case bytes
    }

    var unit: Unit {
        switch self {
        case .sizeAfterLoad, .sizeAfterRemovals, .sizeAfterCompaction, .peakMemory: return .bytes
        default: return .milliseconds
        }
    }

    /// Issue 4's target for PartitionDB on this row, if it has one. Lower is better on every row.
    var target: Target? {
        switch self {
        case .bulkLoad, .individualWrites, .batchWrites, .removals: return .bestPeer
        case .randomReads, .randomReadsAgain, .randomReadsTwoThreads, .randomReadsTwoThreadsAgain, .rangeReads:
            return .lmdb(factor: 1.25)
        case .sizeAfterCompaction: return .sqlite(factor: 1.2)
        case .peakMemory: return .lmdb(factor: 1)
        case .count, .compaction, .sizeAfterLoad, .sizeAfterRemovals: return nil
        }
    }

    enum Target: Sendable {
        /// At most the better of SQLite and LMDB.
        case bestPeer
        /// At most `factor` times LMDB's.
        case lmdb(factor: Double)
        /// At most `factor` times SQLite's.
        case sqlite(factor: Double)

        /// The largest value PartitionDB may have, or nil when a peer's value is missing.
        func limit(sqlite: Double?, lmdb: Double?) -> Double? {
            switch self {
            case .bestPeer:
                guard let sqlite, let lmdb else { return nil }
                return min(sqlite, lmdb)
            case .lmdb(let factor): return lmdb.map { $0 * factor }
            case .sqlite(let factor): return sqlite.map { $0 * factor }
            }
        }

        var text: String {
            switch self {
            case .bestPeer: return "≤ best peer"
            case .lmdb(let factor): return factor == 1 ? "≤ LMDB" : "≤ \(factor)× LMDB"
            case .sqlite(let factor): return factor == 1 ? "≤ SQLite" : "≤ \(factor)× SQLite"
            }
        }
    }
}

/// One engine's results: a value per row (milliseconds or bytes).
typealias EngineResults = [Row: Double]
