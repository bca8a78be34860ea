import Foundation

@testable import PartitionDB

/// Writes the seed inputs of the `partition` and `log` targets into a corpus folder (run by
/// `Fuzz/run.sh seeds`, through the `log` target; the seeds are checked in). The `apply` seeds
/// are hand-written text.
enum Seeds {
    static func write(to corpus: String) throws {
        let eu = try Region("eu")
        let directory = Scratch.databaseDirectory("seeds")

        // partition: an empty partition, the log target's base, and a two-level tree at 8 KiB pages.
        Scratch.reset(directory)
        try PartitionFile.create(
            at: directory + "/p.pdb", name: "p", region: eu, pageSize: 4096,
            fileSystem: PosixFileSystem())
        try save(directory + "/p.pdb", to: corpus + "/partition/seed-empty")
        _ = LogBase.make(in: directory)
        try save(directory + "/p.pdb", to: corpus + "/partition/seed-tables")
        Scratch.reset(directory)
        try PartitionFile.create(
            at: directory + "/p.pdb", name: "p", region: eu, pageSize: 8192,
            fileSystem: PosixFileSystem())
        try withPartition(directory) { partition in
            try partition.write { tx in
                for i in 0..<40 {
                    let key = Array(String(format: "%03d-", i).utf8) + [UInt8](repeating: 0x6B, count: 300)
                    try tx.put("wide", key, [UInt8](repeating: UInt8(i), count: 700), owner: try SubjectID("s\(i % 3)"))
                }
                try tx.put(
                    "big", Array("overflow".utf8), [UInt8](repeating: 7, count: 20_000), owner: try SubjectID("s1"))
            }
            try partition.write { tx in
                for i in stride(from: 0, to: 40, by: 3) {
                    _ = try tx.delete(
                        "wide", Array(String(format: "%03d-", i).utf8) + [UInt8](repeating: 0x6B, count: 300))
                }
            }
        }
        try save(directory + "/p.pdb", to: corpus + "/partition/seed-branches-8k")

        // log: logs of the base partition, copied while it is open (as a crash would leave them).
        try makeLog(directory, to: corpus + "/log/seed-one-commit") { partition in
            try partition.write(durability: .noSync) { tx in
                try tx.put("t0", Array("new".utf8), Array("value".utf8), owner: try SubjectID("s0"))
            }
        }
        try makeLog(directory, to: corpus + "/log/seed-commits") { partition in
            for i in 0..<4 {
                try partition.write(durability: .noSync) { tx in
                    try tx.put(
                        "t\(i % 3)", Array("more-\(i)".utf8), [UInt8](repeating: 9, count: 50),
                        owner: try SubjectID("s2"))
                    _ = try tx.delete("t1", Array("key-\(i * 3 + 1)".utf8))
                }
            }
            try partition.write(durability: .noSync) { tx in
                try tx.put("fresh", Array("o".utf8), [UInt8](repeating: 1, count: 5000), owner: try SubjectID("s3"))
                _ = try tx.dropTable("t2")
            }
        }
        try makeLog(directory, to: corpus + "/log/seed-torn-tail", keep: { $0.count - 1000 }) { partition in
            for i in 0..<3 {
                try partition.write(durability: .noSync) { tx in
                    try tx.put(
                        "t0", Array("torn-\(i)".utf8), [UInt8](repeating: 3, count: 100), owner: try SubjectID("s0"))
                }
            }
        }
    }

    static func save(_ path: String, to seed: String) throws {
        try Data(contentsOf: URL(fileURLWithPath: path)).write(to: URL(fileURLWithPath: seed))
        print("wrote \(seed)")
    }

    static func withPartition(_ directory: String, _ body: (Partition) throws -> Void) throws {
        let database = try Database.open(at: directory, region: try Region("eu"))
        database.setResolver(EverySubjectInEU())
        try body(try database.partition("p"))
        try database.close()
    }

    /// Builds the base, runs `body` on it, and saves the log (or its first `keep` bytes) as the
    /// database holds it before closing.
    static func makeLog(
        _ directory: String, to seed: String, keep: ([UInt8]) -> Int = { $0.count }, _ body: (Partition) throws -> Void
    ) throws {
        _ = LogBase.make(in: directory)
        let database = try Database.open(at: directory, region: try Region("eu"))
        database.setResolver(EverySubjectInEU())
        try body(try database.partition("p"))
        var log = [UInt8](try Data(contentsOf: URL(fileURLWithPath: directory + "/p.pdb-log")))
        // The log grows in zeroed steps; the zeros after the last frame add nothing to a seed.
        let frameSize = WriteAheadLog.frameHeaderSize + LogBase.pageSize
        var end = log.count
        while end > WriteAheadLog.headerSize && log[end - 1] == 0 { end -= 1 }
        let frames = (end - WriteAheadLog.headerSize + frameSize - 1) / frameSize
        log = Array(log.prefix(min(log.count, WriteAheadLog.headerSize + frames * frameSize)))
        try Data(log.prefix(keep(log))).write(to: URL(fileURLWithPath: seed))
        print("wrote \(seed) (\(keep(log)) bytes)")
        try database.close()
    }
}
