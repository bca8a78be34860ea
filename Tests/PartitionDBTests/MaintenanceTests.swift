import Foundation
import XCTest

@testable import PartitionDB

final class MaintenanceTests: XCTestCase {
    func makeDatabase(options: Options = Options(), _ name: String = #function) throws -> (Database, String) {
        let path = try temporaryDirectory(self, name)
        let db = try Database.create(at: path, region: eu, options: options)
        db.setResolver(MaintenanceTests.subjectsInEU())
        return (db, path)
    }

    func reopen(_ path: String, options: Options) throws -> Database {
        let db = try Database.open(at: path, region: eu, options: options)
        db.setResolver(MaintenanceTests.subjectsInEU())
        return db
    }

    /// Subjects s0 ... s9, the owners `fill` uses, all at home in `eu`.
    static func subjectsInEU() -> FixedResolver {
        let resolver = FixedResolver()
        for i in 0..<10 { resolver.set("s\(i)", eu) }
        return resolver
    }

    func fill(_ p: Partition, from: Int, to: Int) throws {
        try p.write { tx in
            for i in from..<to {
                try tx.put(
                    "t", bytes(String(format: "k%06d", i)),
                    [UInt8](repeating: UInt8(i & 0xFF), count: i % 50 == 0 ? 20_000 : 150),
                    owner: try SubjectID("s\(i % 10)"))
            }
        }
    }

    func contents(_ p: Partition) throws -> [Record] {
        try p.read { tx in
            var all: [Record] = []
            for table in try tx.tables() {
                try tx.scan(table) {
                    all.append($0); return true
                }
            }
            return all
        }
    }

    /// After a transaction larger than 64 MiB, the restarted log is cut back to its first 4 MiB
    /// (not to nothing), so the small commits after it overwrite allocated blocks; the data and
    /// the file's checks are unaffected, and closing empties the log.
    func testLargeLogIsCutBackToItsFirstSteps() throws {
        let (db, path) = try makeDatabase()
        let p = try db.createPartition("p")
        let log = path + "/p.pdb-log"
        let big = (0..<1_048_576).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try p.write { tx in
            for i in 0..<70 { try tx.put("t", bytes("big\(i)"), big, owner: try SubjectID("s1")) }
        }
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: log)[.size] as? UInt64)
        XCTAssertEqual(size, WriteAheadLog.growthStep, "the log after the checkpoint of a 70 MiB commit")
        try p.write { tx in try tx.put("t", bytes("small"), bytes("value"), owner: try SubjectID("s1")) }
        let after = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: log)[.size] as? UInt64)
        XCTAssertEqual(after, WriteAheadLog.growthStep, "a small commit reuses the kept blocks")
        XCTAssertTrue(try p.check().isClean)
        try db.close()
        XCTAssertEqual(try XCTUnwrap(FileManager.default.attributesOfItem(atPath: log)[.size] as? UInt64), 0)
        let reopened = try Database.open(at: path, region: eu)
        try reopened.partition("p").read { tx in
            XCTAssertEqual(try tx.get("t", bytes("big69")), big)
            XCTAssertEqual(try tx.get("t", bytes("small")), bytes("value"))
        }
        try reopened.close()
    }

    func testFreePagesAreReusedSoRewritesDoNotGrowTheFile() throws {
        let (db, _) = try makeDatabase()
        let p = try db.createPartition("p")
        try fill(p, from: 0, to: 3000)
        let grown = try p.info().pageCount
        for _ in 0..<10 {
            try p.write { tx in for i in 0..<3000 { try tx.delete("t", bytes(String(format: "k%06d", i))) } }
            try fill(p, from: 0, to: 3000)
        }
        let after = try p.info().pageCount
        XCTAssertLessThanOrEqual(after, grown + grown / 10, "file grew from \(grown) to \(after) pages")
        XCTAssertTrue(try p.check().isClean)
        try db.close()
    }

    func testCompactionShrinksTheFileAndKeepsEverything() throws {
        let (db, _) = try makeDatabase()
        let p = try db.createPartition("p")
        try fill(p, from: 0, to: 5000)
        try p.write { tx in for i in 0..<5000 where i % 4 != 0 { try tx.delete("t", bytes(String(format: "k%06d", i))) }
        }
        let before = try contents(p)
        let lsn = p.lastLSN
        let summary = try p.compact()
        XCTAssertLessThan(summary.bytesAfter, summary.bytesBefore / 2)
        XCTAssertEqual(try contents(p), before)
        XCTAssertEqual(p.lastLSN, lsn)
        XCTAssertTrue(try p.check().isClean)
        try p.read { tx in
            XCTAssertEqual(
                try tx.keys(ownedBy: try SubjectID("s0")).count, before.filter { $0.owner?.rawValue == "s0" }.count)
        }
        try fill(p, from: 5000, to: 5100)
        try db.close()
    }

    func testBackupWhileWritingAndRestore() throws {
        let (db, path) = try makeDatabase()
        let p = try db.createPartition("p")
        try fill(p, from: 0, to: 2000)
        let expected = try contents(p)
        let backup = path + "/p.backup"
        let summary = try p.backup(to: backup)
        XCTAssertEqual(summary.lsn, p.lastLSN)
        try fill(p, from: 2000, to: 2500)
        let restored = try db.restore(from: backup, as: "copy")
        XCTAssertEqual(restored.lsn, summary.lsn)
        let copy = try db.partition("copy")
        XCTAssertEqual(try contents(copy), expected)
        XCTAssertTrue(try copy.check().isClean)
        XCTAssertThrowsError(try db.restore(from: backup, as: "copy")) {
            XCTAssertEqual($0 as? PartitionDBError, .partitionExists(name: "copy"))
        }
        // A damaged backup is refused with a typed error and creates nothing.
        var backupBytes = try Data(contentsOf: URL(fileURLWithPath: backup))
        backupBytes[backupBytes.count / 2] ^= 0x55
        try backupBytes.write(to: URL(fileURLWithPath: backup))
        XCTAssertThrowsError(try db.restore(from: backup, as: "broken")) {
            guard case .badBackup = $0 as? PartitionDBError else { return XCTFail("\($0)") }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + "/broken.pdb"))
        try db.close()
    }

    func testChangeSetsBringACopyUpToDate() throws {
        let (db, path) = try makeDatabase()
        let p = try db.createPartition("p")
        try fill(p, from: 0, to: 500)
        let backup = path + "/p.backup"
        try p.backup(to: backup)

        let replicaPath = try temporaryDirectory(self, "replica")
        let replicaDB = try Database.create(at: replicaPath, region: eu)
        try replicaDB.restore(from: backup)
        let replica = try replicaDB.partition("p")
        for round in 0..<5 {
            try fill(p, from: 500 + round * 100, to: 600 + round * 100)
            try p.write { tx in _ = try tx.delete("t", bytes(String(format: "k%06d", round))) }
            let changes = try p.changes(after: replica.lastLSN)
            XCTAssertFalse(changes.isEmpty)
            for change in changes { try replica.apply(change) }
            XCTAssertEqual(replica.lastLSN, p.lastLSN)
            XCTAssertEqual(try contents(replica), try contents(p))
        }
        XCTAssertTrue(try replica.check().isClean)
        // A change set out of order is refused.
        let changes = try p.changes(after: LSN(p.lastLSN.rawValue - 1))
        XCTAssertThrowsError(try replica.apply(changes[0])) {
            guard case .changeStreamMismatch = $0 as? PartitionDBError else { return XCTFail("\($0)") }
        }
        try replicaDB.close()
        try db.close()
    }

    /// A commit that adds `directWritePages` pages writes them into the partition file, not the
    /// log: its data reads back (before and after reopening) and checks clean, and its change set
    /// still holds every page it wrote, read back from the partition file.
    func testLargeCommitsWriteNewPagesStraightIntoThePartitionFile() throws {
        var options = Options()
        options.directWritePages = 16
        var (db, path) = try makeDatabase(options: options)
        var p = try db.createPartition("p")
        try fill(p, from: 0, to: 10)
        let beforeBulk = p.lastLSN
        let framesBefore = p.pager.wal.frameCount
        try fill(p, from: 10, to: 3_000)
        let bulk = p.lastLSN
        // The bulk commit's new pages (hundreds) are not in the log, only the pages it changed.
        XCTAssertLessThan(p.pager.wal.frameCount - framesBefore, 16)
        XCTAssertEqual(try contents(p).count, 3_000)
        XCTAssertTrue(try p.check().isClean)
        let bulkChanges = try p.changes(after: beforeBulk)
        XCTAssertEqual(bulkChanges.map { $0.lsn }, [bulk])
        XCTAssertEqual(bulkChanges.first?.pageCount, p.pager.latestSnapshot.header.pageCount)
        XCTAssertGreaterThan(bulkChanges.first?.pages.count ?? 0, 100)
        try fill(p, from: 3_000, to: 3_005)
        XCTAssertEqual(try p.changes(after: bulk).count, 1)
        // The same commit with the option off goes through the log and has a change set.
        try db.close()
        options.directWritePages = nil
        db = try reopen(path, options: options)
        p = try db.partition("p")
        XCTAssertEqual(try contents(p).count, 3_005)
        XCTAssertTrue(try p.check().isClean)
        let beforeLogged = p.lastLSN
        try fill(p, from: 3_005, to: 6_000)
        XCTAssertEqual(try p.changes(after: beforeLogged).count, 1)
        XCTAssertGreaterThan(p.pager.wal.frameCount, 100)
        try db.close()
    }

    /// A handle's own checkpoint threshold (a replica's copies) replaces the database's: the log
    /// is checkpointed after that many frames, and nil goes back to `autoCheckpointFrames`.
    func testAHandlesCheckpointThresholdReplacesTheDatabases() throws {
        let (db, _) = try makeDatabase()
        let p = try db.createPartition("p")
        func oneCommit(_ i: Int) throws {
            try p.write { try $0.put("t", bytes("k\(i)"), bytes("v\(i)"), owner: try SubjectID("s0")) }
        }
        p.setAutoCheckpointFrames(8)
        var mostFrames = 0
        for i in 0..<40 {
            try oneCommit(i)
            mostFrames = max(mostFrames, p.pager.wal.frameCount - p.pager.wal.backfilled)
        }
        XCTAssertLessThan(mostFrames, 8, "the log held 8 frames or more after a commit")
        p.setAutoCheckpointFrames(nil)
        for i in 40..<80 { try oneCommit(i) }
        XCTAssertGreaterThanOrEqual(p.pager.wal.frameCount - p.pager.wal.backfilled, 40, "the default threshold")
        try db.close()
    }

    /// A durable commit that changes at least max(`directWritePages`, `autoCheckpointFrames`)
    /// existing pages moves its changed nodes to new pages written straight into the partition
    /// file: the log takes only a few pages, a reader of the snapshot before it still reads every
    /// old record, the old pages are freed and the next commits reuse them, and everything checks
    /// clean before and after reopening.
    func testLargeChangesMoveToNewPagesWrittenOnce() throws {
        var options = Options()
        options.directWritePages = 16
        options.autoCheckpointFrames = 64
        var (db, path) = try makeDatabase(options: options)
        var p = try db.createPartition("p")
        try fill(p, from: 0, to: 3_000)
        try p.checkpoint()
        var expected = try contents(p)
        let pager = p.pager
        let before = pager.latestSnapshot.header
        let framesBefore = pager.wal.frameCount
        try p.read { old in
            try p.write { tx in
                for i in stride(from: 0, to: 3_000, by: 2) {
                    XCTAssertTrue(try tx.delete("t", bytes(String(format: "k%06d", i))))
                }
            }
            var oldCount = 0
            try old.scan("t") { _ in
                oldCount += 1; return true
            }
            XCTAssertEqual(oldCount, 3_000)
        }
        expected = expected.enumerated().filter { $0.offset % 2 == 1 }.map { $0.element }
        let after = pager.latestSnapshot.header
        // Hundreds of leaves changed; the log took page 0, the roots, the free list's trunk, and
        // leaves that merges emptied and freed (their stale images are harmless).
        var free = Set<UInt32>()
        var trunk = after.freelistHead
        while trunk != .none {
            let page = try pager.page(trunk, in: pager.latestSnapshot)
            free.insert(trunk.rawValue)
            for i in 0..<Int(page.u32(FreelistLayout.countOffset)) {
                free.insert(page.u32(FreelistLayout.entriesOffset + 4 * i))
            }
            trunk = PageNumber(page.u32(FreelistLayout.nextOffset))
        }
        let tableRoot = try p.read { try XCTUnwrap(try $0.tableInfo("t")).root.rawValue }
        let roots: Set<UInt32> = [0, after.catalogRoot.rawValue, after.ownerIndexRoot.rawValue, tableRoot]
        let logged = pager.wal.newestFrames(in: framesBefore..<pager.wal.frameCount).map { $0.0.rawValue }
        XCTAssertEqual(logged.filter { !roots.contains($0) && !free.contains($0) }, [])
        XCTAssertLessThan(logged.count, 30)
        XCTAssertGreaterThan(after.pageCount, before.pageCount + 100)
        XCTAssertGreaterThan(after.freeCount, before.freeCount + 100)
        XCTAssertEqual(try contents(p), expected)
        XCTAssertTrue(try p.check().isClean)
        // Small commits reuse the freed pages: the file does not grow.
        for start in stride(from: 3_000, to: 3_200, by: 20) { try fill(p, from: start, to: start + 20) }
        XCTAssertEqual(pager.latestSnapshot.header.pageCount, after.pageCount)
        XCTAssertTrue(try p.check().isClean)
        let final = try contents(p)
        XCTAssertEqual(final.count, 1_700)
        try db.close()
        db = try reopen(path, options: options)
        p = try db.partition("p")
        XCTAssertEqual(try contents(p), final)
        XCTAssertTrue(try p.check().isClean)
        try db.close()
    }

    /// A transaction that changes more existing pages than `WriteContext`'s summary threshold
    /// (1,024), so that descents consult its bitmap of possibly changed pages, reads its own
    /// changes inside the transaction, and they are what commits. With the log path only
    /// (`directWritePages` nil), so no page moves.
    func testLargeTransactionReadsItsOwnChanges() throws {
        var options = Options()
        options.directWritePages = nil
        let (db, _) = try makeDatabase(options: options)
        let p = try db.createPartition("p")
        let count = 12_000
        func key(_ i: Int) -> [UInt8] { bytes(String(format: "k%06d", i)) }
        func value(_ i: Int, _ round: Int) -> [UInt8] { [UInt8](repeating: UInt8((i + round) & 0xFF), count: 300) }
        try p.write { tx in
            for i in 0..<count { try tx.put("t", key(i), value(i, 0), owner: try SubjectID("s\(i % 10)")) }
        }
        let pagesBefore = p.pager.latestSnapshot.header.pageCount
        XCTAssertGreaterThan(pagesBefore, 1_100)
        try p.write { tx in
            for i in 0..<count { try tx.put("t", key(i), value(i, 1), owner: try SubjectID("s\(i % 10)")) }
            for i in stride(from: 0, to: count, by: 7) { XCTAssertTrue(try tx.delete("t", key(i))) }
            for i in 0..<count {
                XCTAssertEqual(try tx.get("t", key(i)), i % 7 == 0 ? nil : value(i, 1), "record \(i) inside")
            }
        }
        try p.read { tx in
            for i in 0..<count {
                XCTAssertEqual(try tx.get("t", key(i)), i % 7 == 0 ? nil : value(i, 1), "record \(i) after")
            }
        }
        XCTAssertTrue(try p.check().isClean)
        try db.close()
    }

    func testLimits() throws {
        let (db, _) = try makeDatabase()
        let p = try db.createPartition("p")
        let owner = try SubjectID("s1")
        let big = [UInt8](repeating: 7, count: 16 << 20)
        try p.write { tx in
            try tx.put("t", [UInt8](repeating: 1, count: WriteTransaction.maxKeySize), bytes("max key"), owner: owner)
            try tx.put("t", bytes("big"), big, owner: owner)
            XCTAssertThrowsError(
                try tx.put("t", [UInt8](repeating: 1, count: WriteTransaction.maxKeySize + 1), [], owner: owner)
            ) {
                XCTAssertEqual($0 as? PartitionDBError, .keyTooLarge(size: 1025, limit: 1024))
            }
            XCTAssertThrowsError(try tx.put("t", [], [], owner: owner)) {
                XCTAssertEqual($0 as? PartitionDBError, .keyEmpty)
            }
            XCTAssertThrowsError(
                try tx.put(
                    "t", bytes("huge"), [UInt8](repeating: 0, count: WriteTransaction.maxValueSize + 1), owner: owner)
            ) {
                guard case .valueTooLarge = $0 as? PartitionDBError else { return XCTFail("\($0)") }
            }
        }
        try p.read { tx in
            XCTAssertEqual(try tx.get("t", bytes("big")), big)
            XCTAssertEqual(try tx.get("t", [UInt8](repeating: 1, count: 1024)), bytes("max key"))
        }
        XCTAssertTrue(try p.check().isClean)
        try db.close()
    }
}
