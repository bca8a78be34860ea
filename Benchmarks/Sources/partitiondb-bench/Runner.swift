#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Runs the workload against one engine, in this process, and measures each row.
struct Runner {
    let workload: Workload
    let kind: EngineKind
    /// The engine's own directory; it must not exist, and it is removed at the end.
    let directory: String

    private func progress(_ message: String) {
        printError("[\(kind.rawValue)] \(message)\n")
    }

    private func timed(_ row: Row, _ results: inout EngineResults, _ body: () throws -> Void) rethrows {
        let clock = ContinuousClock()
        let elapsed = try clock.measure(body)
        let milliseconds = Double(elapsed.components.seconds) * 1e3 + Double(elapsed.components.attoseconds) / 1e15
        results[row] = milliseconds
        // The peak so far shows which phase sets the peak-memory row.
        let peak = (try? peakResidentBytes()).map { " (peak resident memory so far \(formatBytes(Double($0))))" } ?? ""
        progress("\(row.rawValue): \(formatMilliseconds(milliseconds))\(peak)")
    }

    private func sized(_ row: Row, _ path: String, _ results: inout EngineResults) throws {
        let bytes = try directorySize(path)
        results[row] = Double(bytes)
        progress("\(row.rawValue): \(formatBytes(Double(bytes)))")
    }

    private func verify(_ row: Row, _ tally: ReadTally, reads: Int, minimumEntries: Int) throws {
        guard tally.missing == 0, tally.mismatches == 0, tally.reads == reads, tally.entries >= minimumEntries else {
            throw BenchError.verification(
                engine: kind.title, operation: row.rawValue,
                detail:
                    "\(tally.reads) reads (expected \(reads)), \(tally.entries) entries (expected at least "
                    + "\(minimumEntries)), \(tally.missing) missing, \(tally.mismatches) wrong")
        }
    }

    private func verifyCount(_ found: Int, _ expected: Int, _ when: String) throws {
        guard found == expected else {
            throw BenchError.verification(
                engine: kind.title, operation: "count \(when)", detail: "\(found) records, expected \(expected)")
        }
    }

    func run() throws -> EngineResults {
        guard !pathExists(directory) else {
            throw BenchError.usage(
                "\(directory) exists (left by an interrupted run?); remove it, or pick another --dir")
        }
        let n = workload.records
        var results: EngineResults = [:]
        var compactedDirectory: String? = nil
        defer {
            try? removeTree(directory)
            if let compactedDirectory, compactedDirectory != directory { try? removeTree(compactedDirectory) }
        }
        progress("\(n) records in \(directory)")
        let engine = try kind.make(directory: directory, workload: workload)

        try timed(.bulkLoad, &results) { try engine.insert(0..<n) }
        try timed(.individualWrites, &results) {
            for index in workload.individualRange { try engine.insert(index..<(index + 1)) }
        }
        try timed(.batchWrites, &results) {
            for batch in 0..<Workload.batchWrites { try engine.insert(workload.batchRange(batch)) }
        }
        try sized(.sizeAfterLoad, directory, &results)

        var counted = 0
        try timed(.count, &results) { counted = try engine.count() }
        try verifyCount(counted, workload.insertedRecords, "after the writes")

        // One reader for both passes, so the second shows each engine with a warm cache.
        let reader = try engine.makeReader()
        for row in [Row.randomReads, .randomReadsAgain] {
            var tally = ReadTally()
            try timed(row, &results) { tally = try reader.read(0..<n) }
            try verify(row, tally, reads: n, minimumEntries: n)
        }

        let readers = [try engine.makeReader(), try engine.makeReader()]
        let halves = [0..<(n / 2), (n / 2)..<n]
        for row in [Row.randomReadsTwoThreads, .randomReadsTwoThreadsAgain] {
            var tally = ReadTally()
            try timed(row, &results) {
                let tallies = try runOnThreads(
                    zip(readers, halves).map { reader, half in { @Sendable in try reader.read(half) } })
                tally = tallies.reduce(ReadTally(), +)
            }
            try verify(row, tally, reads: n, minimumEntries: n)
        }
        for reader in readers { reader.close() }

        var ranges = ReadTally()
        try timed(.rangeReads, &results) { ranges = try reader.readRanges(0..<(n / 2), length: Workload.rangeLength) }
        // Every seek finds at least its own key; only the last few keys of the table have fewer
        // than `rangeLength` entries after them.
        let length = Workload.rangeLength
        try verify(
            .rangeReads, ranges, reads: n / 2, minimumEntries: max(n / 2, n / 2 * length - length * (length - 1) / 2))
        reader.close()

        var removed = 0
        try timed(.removals, &results) { removed = try engine.remove(0..<(n / 2)) }
        guard removed == n / 2 else {
            throw BenchError.verification(
                engine: kind.title, operation: Row.removals.rawValue, detail: "removed \(removed) of \(n / 2) records")
        }
        try sized(.sizeAfterRemovals, directory, &results)

        try timed(.compaction, &results) { compactedDirectory = try engine.compact() }
        try sized(.sizeAfterCompaction, compactedDirectory!, &results)
        try verifyCount(try engine.count(), workload.insertedRecords - n / 2, "after removals and compaction")

        try engine.close()
        results[.peakMemory] = Double(try peakResidentBytes())
        progress("\(Row.peakMemory.rawValue): \(formatBytes(results[.peakMemory]!))")
        return results
    }
}
