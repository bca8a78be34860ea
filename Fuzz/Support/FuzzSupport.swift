import Foundation
import PartitionDB

#if canImport(Glibc)
    import Glibc
#endif

/// Helpers shared by the fuzz targets: a scratch directory per process, file writes, and a
/// read of everything a partition holds. Method: spec/testing.md#fuzzing
enum Scratch {
    /// The process's scratch directory: in /dev/shm when there is one, so that the engine's
    /// fsyncs cost nothing. Removed at exit.
    static let root: String = {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let path = base + "/pdb-fuzz-\(getpid())"
        try? FileManager.default.removeItem(atPath: path)
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        scratchRootForExit = strdup(path)
        atexit {
            if let root = scratchRootForExit {
                try? FileManager.default.removeItem(atPath: String(cString: root))
            }
        }
        return path
    }()

    /// A database directory of region `eu` under the scratch root: only its identity file.
    static func databaseDirectory(_ name: String) -> String {
        let path = root + "/" + name
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        write(Array("partitiondb 1\nregion eu\n".utf8), to: path + "/PARTITIONDB")
        return path
    }

    /// Removes every file of `directory` but the identity file and the lock.
    static func reset(_ directory: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        where name != "PARTITIONDB" && name != "LOCK" {
            unlink(directory + "/" + name)
        }
    }

    static func write(_ bytes: [UInt8], to path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        precondition(fd >= 0, "cannot create \(path)")
        defer { close(fd) }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
            precondition(n > 0, "cannot write \(path)")
            done += n
        }
    }
}

nonisolated(unsafe) private var scratchRootForExit: UnsafeMutablePointer<CChar>? = nil

/// Every subject lives in `eu`: the fuzz targets test storage, not residency.
final class EverySubjectInEU: HomeRegionResolver, @unchecked Sendable {
    func homeRegion(of subject: SubjectID) throws -> Region? { try Region("eu") }
}

/// Runs `body`; an engine error is an expected answer to damaged input, any other error is a
/// bug (the engine throws only `PartitionDBError`). Returns nil when `body` threw.
@discardableResult
func engine<T>(_ body: () throws -> T) -> T? {
    do {
        return try body()
    } catch is PartitionDBError {
        return nil
    } catch {
        fatalError("fuzz: an error that is not a PartitionDBError: \(error)")
    }
}

/// Reads the partition through every read path (check, tables, counts, forward and reverse
/// scans, gets, cursors, the owner index), with limits so a huge input stays fast. Returns
/// whether `check()` found it clean.
@discardableResult
func readThrough(_ partition: Partition) -> Bool {
    let clean = engine { try partition.check().isClean } ?? false
    engine {
        try partition.read { tx in
            var owners = Set<String>()
            for table in try tx.tables().prefix(16) {
                engine { _ = try tx.count(table) }
                var keys: [[UInt8]] = []
                engine {
                    try tx.scan(table) { record in
                        if let owner = record.owner { owners.insert(owner.rawValue) }
                        keys.append(record.key)
                        return keys.count < 2000
                    }
                }
                var seen = 0
                engine {
                    try tx.scan(table, reverse: true) { _ in
                        seen += 1
                        return seen < 2000
                    }
                }
                for key in keys.prefix(64) {
                    engine { _ = try tx.record(table, key) }
                    engine {
                        try tx.scan(table, range: KeyRange(lower: .exclusive(key)), reverse: true) { _ in false }
                    }
                }
                engine {
                    let cursor = try tx.cursor(table)
                    try cursor.last()
                    var steps = 0
                    while cursor.isValid && steps < 100 {
                        _ = try cursor.record()
                        try cursor.previous()
                        steps += 1
                    }
                }
            }
            for owner in owners.sorted().prefix(16) {
                engine { _ = try tx.keys(ownedBy: try SubjectID(owner)) }
            }
        }
    }
    return clean
}

/// For a partition that `check()` found clean: a write transaction (new table, replaced and
/// deleted records, an overflow value), a close, a reopen: it must still be clean and hold what
/// was written. A clean partition damaged by a write is a bug.
func writeAndRecheck(_ directory: String, _ name: String) {
    let key: [UInt8] = Array("fuzz-key".utf8)
    let value = [UInt8](repeating: 0xA5, count: 9000)
    guard let database = engine({ try Database.open(at: directory, region: try Region("eu")) }) else {
        fatalError("fuzz: cannot reopen \(directory)")
    }
    database.setResolver(EverySubjectInEU())
    let written: Bool =
        engine {
            let partition = try database.partition(name)
            try partition.write { tx in
                let owner: SubjectID? = partition.region.isGlobal ? nil : try SubjectID("fuzz")
                for table in try tx.tables().prefix(4) {
                    var first: [UInt8]? = nil
                    try tx.scan(table) { record in
                        first = record.key
                        return false
                    }
                    if let first { _ = try tx.delete(table, first) }
                    try tx.put(table, key, [1, 2, 3], owner: owner)
                }
                try tx.put("fuzz-table", key, value, owner: owner)
            }
            return true
        } ?? false
    engine { try database.close() }
    guard written else { return }
    guard let reopened = engine({ try Database.open(at: directory, region: try Region("eu")) }) else {
        fatalError("fuzz: cannot reopen \(directory) after a write")
    }
    defer { engine { try reopened.close() } }
    guard let partition = engine({ try reopened.partition(name) }) else {
        fatalError("fuzz: a clean partition cannot be opened after a write")
    }
    guard let report = engine({ try partition.check() }) else { fatalError("fuzz: check failed after a write") }
    if !report.isClean { fatalError("fuzz: a clean partition is damaged after a write: \(report.problems.prefix(3))") }
    let stored = engine { try partition.read { try $0.get("fuzz-table", key) } }
    if stored != value { fatalError("fuzz: the value written is not read back") }
}
