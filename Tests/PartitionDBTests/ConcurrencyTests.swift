import Foundation
import XCTest

@testable import PartitionDB

/// Snapshot isolation: readers on several threads see exactly the commit they started on while
/// a writer commits, and neither waits for the other.
final class ConcurrencyTests: XCTestCase {
    func testReadersSeeTheirSnapshotWhileWriterCommits() throws {
        var options = Options()
        options.autoCheckpointFrames = 50
        try readersSeeTheirSnapshot(options: options, durability: .noSync, valueSize: { 100 + $0 })
    }

    /// The same while every commit is a direct commit (`Options.directWritePages`): durable, with
    /// a value that needs new overflow pages, written straight into the partition file while the
    /// readers map it, and with the changed nodes moved to new pages (`relocationPages`) while
    /// the readers still read their old places.
    func testReadersSeeTheirSnapshotWhileDirectCommitsGrowTheFile() throws {
        var options = Options()
        options.autoCheckpointFrames = 50
        options.directWritePages = 2
        options.relocationPages = 2
        try readersSeeTheirSnapshot(options: options, durability: .durable, valueSize: { 9_000 + $0 }, commits: 120)
    }

    /// Readers scan while each commit rewrites a third of the records, changing every leaf, so
    /// every commit moves its changed nodes to new pages and frees the old ones
    /// (`relocationPages`), which the next commit's large value reuses: a reader must still read
    /// exactly the values of its snapshot. Commit r writes value r into records i with i ≡ r
    /// (mod 3).
    func testReadersKeepTheirSnapshotWhileCommitsMoveNodesToNewPages() throws {
        let path = try temporaryDirectory(self)
        var options = Options()
        options.autoCheckpointFrames = 50
        options.directWritePages = 2
        options.relocationPages = 2
        let db = try Database.create(at: path, region: eu, options: options)
        let partition = try db.globalPartition()
        let records = 600
        @Sendable func key(_ i: Int) -> [UInt8] { bytes(String(format: "item-%05d", i)) }
        @Sendable func value(_ round: Int) -> [UInt8] {
            bytes(String(format: "%08d", round)) + [UInt8](repeating: 7, count: 100)
        }
        try partition.write { tx in
            for i in 0..<records { try tx.put("items", key(i), value(0)) }
            try tx.put("state", bytes("round"), bytes("0"))
        }
        let pagesBefore = partition.pager.latestSnapshot.header.pageCount
        let failures = FailureLog()
        let writerDone = AtomicFlag()
        let group = DispatchGroup()
        for reader in 0..<3 {
            DispatchQueue.global().async(group: group) {
                var reads = 0
                while !writerDone.value || reads < 10 {
                    do {
                        try partition.read { tx in
                            let round = Int(String(decoding: try tx.get("state", bytes("round"))!, as: UTF8.self))!
                            var i = 0
                            try tx.scan("items") { record in
                                let written = round - ((round - i % 3) % 3 + 3) % 3
                                if record.key != key(i) || record.value != value(max(0, written)) {
                                    failures.add("reader \(reader): record \(i) wrong in round \(round)")
                                }
                                i += 1
                                return true
                            }
                            if i != records { failures.add("reader \(reader): scanned \(i) records in round \(round)") }
                        }
                    } catch {
                        failures.add("reader \(reader): \(error)")
                    }
                    reads += 1
                }
            }
        }
        for round in 1...60 {
            try partition.write { tx in
                for i in stride(from: round % 3, to: records, by: 3) { try tx.put("items", key(i), value(round)) }
                try tx.put("state", bytes("round"), bytes(String(round)))
                // Takes the pages the last commit freed (through the log), so that this one may move nodes again.
                try tx.put("blobs", key(round), [UInt8](repeating: UInt8(round & 0xFF), count: 90_000))
            }
        }
        writerDone.set()
        group.wait()
        XCTAssertEqual(failures.all, [])
        XCTAssertTrue(try partition.check().isClean)
        // The commits moved nodes (the file grew), but never so far that free pages would make
        // up more than half of it.
        let header = partition.pager.latestSnapshot.header
        XCTAssertGreaterThan(header.pageCount, pagesBefore)
        XCTAssertLessThanOrEqual(2 * header.freeCount, header.pageCount)
        try db.close()
    }

    private func readersSeeTheirSnapshot(
        options: Options, durability: Durability, valueSize: (Int) -> Int, commits: Int = 300
    ) throws {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu, options: options)
        let partition = try db.globalPartition()
        try partition.write { tx in try tx.put("state", bytes("counter"), bytes("0")) }

        let failures = FailureLog()
        let writerDone = AtomicFlag()
        let group = DispatchGroup()
        for reader in 0..<4 {
            DispatchQueue.global().async(group: group) {
                var reads = 0
                while !writerDone.value || reads < 20 {
                    do {
                        try partition.read { tx in
                            // Commit i wrote counter = i and keys k0 ... k(i-1): a snapshot holds all or nothing of it.
                            let counter = Int(String(decoding: try tx.get("state", bytes("counter"))!, as: UTF8.self))!
                            let count = try tx.hasTable("items") ? try tx.count("items") : 0
                            if count != counter {
                                failures.add("reader \(reader): count \(count) with counter \(counter)")
                            }
                            Thread.sleep(forTimeInterval: 0.0005)
                            var seen = 0
                            if try tx.hasTable("items") {
                                try tx.scan("items") { _ in
                                    seen += 1
                                    return true
                                }
                            }
                            if seen != counter {
                                failures.add("reader \(reader): scanned \(seen) with counter \(counter)")
                            }
                            let again = Int(String(decoding: try tx.get("state", bytes("counter"))!, as: UTF8.self))!
                            if again != counter {
                                failures.add("reader \(reader): counter moved from \(counter) to \(again)")
                            }
                        }
                    } catch {
                        failures.add("reader \(reader): \(error)")
                    }
                    reads += 1
                }
            }
        }
        for i in 1...commits {
            try partition.write(durability: durability) { tx in
                try tx.put(
                    "items", bytes(String(format: "k%06d", i - 1)),
                    [UInt8](repeating: UInt8(i & 0xFF), count: valueSize(i)))
                try tx.put("state", bytes("counter"), bytes(String(i)))
            }
        }
        writerDone.set()
        group.wait()
        XCTAssertEqual(failures.all, [])
        XCTAssertTrue(try partition.check().isClean)
        try db.close()
    }

    func testLongReaderDoesNotBlockWriterAndKeepsItsSnapshot() throws {
        let path = try temporaryDirectory(self)
        var options = Options()
        options.autoCheckpointFrames = 10
        let db = try Database.create(at: path, region: eu, options: options)
        let partition = try db.globalPartition()
        try partition.write { tx in try tx.put("t", bytes("a"), bytes("old")) }

        let readerStarted = DispatchSemaphore(value: 0)
        let writerFinished = DispatchSemaphore(value: 0)
        let failures = FailureLog()
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            do {
                try partition.read { tx in
                    readerStarted.signal()
                    // The writer must finish its 200 commits while this snapshot stays open.
                    if writerFinished.wait(timeout: .now() + 60) == .timedOut { failures.add("writer was blocked") }
                    if try tx.get("t", bytes("a")) != bytes("old") { failures.add("snapshot changed") }
                    if try tx.count("t") != 1 { failures.add("count changed") }
                }
            } catch {
                failures.add("\(error)")
            }
            done.signal()
        }
        readerStarted.wait()
        for i in 0..<200 {
            try partition.write(durability: .noSync) { tx in
                try tx.put("t", bytes("a"), bytes("new \(i)"))
                try tx.put("t", bytes("k\(i)"), [UInt8](repeating: 1, count: 500))
            }
        }
        writerFinished.signal()
        done.wait()
        XCTAssertEqual(failures.all, [])
        try partition.read { tx in XCTAssertEqual(try tx.get("t", bytes("a")), bytes("new 199")) }
        XCTAssertTrue(try partition.check().isClean)
        try db.close()
    }

    /// Readers take log frames from the commits' page images in memory, which a log generation
    /// keeps for its first 4,096 frames (with autoCheckpointFrames 1). A reader that holds every
    /// checkpoint back lets the log grow past that; later frames are then read from the log
    /// file, and both kinds of reader see their own snapshot.
    func testFramesBeyondTheKeptImagesAreReadFromTheLogFile() throws {
        let path = try temporaryDirectory(self)
        var options = Options()
        options.autoCheckpointFrames = 1
        let db = try Database.create(at: path, region: eu, options: options)
        let partition = try db.globalPartition()
        try partition.write { tx in try tx.put("t", bytes("first"), bytes("0")) }
        let commits = 1500
        try partition.read { old in
            for i in 0..<commits {
                try partition.write(durability: .noSync) { tx in
                    try tx.put("t", bytes(String(format: "k%05d", i)), [UInt8](repeating: UInt8(i & 0xFF), count: 300))
                    try tx.put("t", bytes("first"), bytes(String(i + 1)))
                }
            }
            XCTAssertGreaterThan(partition.pager.latestSnapshot.frameLimit, 4096, "the log did not outgrow the images")
            XCTAssertEqual(try old.count("t"), 1)
            XCTAssertEqual(try old.get("t", bytes("first")), bytes("0"))
        }
        try partition.read { tx in
            XCTAssertEqual(try tx.count("t"), commits + 1)
            XCTAssertEqual(try tx.get("t", bytes("first")), bytes(String(commits)))
            for i in 0..<commits {
                XCTAssertEqual(
                    try tx.get("t", bytes(String(format: "k%05d", i))), [UInt8](repeating: UInt8(i & 0xFF), count: 300))
            }
        }
        XCTAssertTrue(try partition.check().isClean)
        try db.close()
    }
}

final class FailureLog: @unchecked Sendable {
    private let lock = NSLock()
    private var failures: [String] = []
    func add(_ failure: String) { lock.withLock { failures.append(failure) } }
    var all: [String] { lock.withLock { failures } }
}

final class AtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    func set() { lock.withLock { flag = true } }
    var value: Bool { lock.withLock { flag } }
}
