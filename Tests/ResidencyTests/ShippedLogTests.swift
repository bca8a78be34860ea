import Foundation
import PartitionDB
import XCTest

@testable import Residency

/// The retained shipped log on disk (spec/replication.md#retained-segments): what a primary keeps
/// for its replicas survives a restart, stays within its bounds, and what a crash or an operator
/// left behind is repaired or refused, never served.
final class ShippedLogTests: XCTestCase {
    var path = ""
    let alice = try! SubjectID("alice")

    override func setUpWithError() throws {
        path = FileManager.default.temporaryDirectory.path + "/pdb-shipped-" + UUID().uuidString
        let database = try Database.create(at: path, region: try Region("eu"))
        try ResidencyDirectory(database: database).assignHome(alice, to: try Region("eu"))
        _ = try database.createPartition("users")
        try database.close()
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: path) }

    private var segments: String { SegmentFormat.directory(database: path, partition: "users") }

    private func open(maxBytes: UInt64 = 1 << 20) throws -> (Database, Partition, ShippedLog) {
        let database = try Database.open(at: path, region: try Region("eu"))
        _ = try ResidencyDirectory(database: database)
        let partition = try database.partition("users")
        var retention = HostConfiguration.Retention()
        retention.maxBytes = maxBytes
        let log = try ShippedLog(directory: segments, partition: partition, retention: retention)
        partition.setCommitObserver { log.append($0) }
        return (database, partition, log)
    }

    private func put(_ partition: Partition, _ range: Range<Int>, durability: Durability = .durable) throws {
        for i in range {
            try partition.write(durability: durability) {
                try $0.put("t", Array("key\(i)".utf8), Array(repeating: UInt8(i & 0xff), count: 300), owner: alice)
            }
        }
    }

    /// Every commit after `position`, read back through the log, as a copy would apply them.
    private func all(_ log: ShippedLog, fileID: [UInt8], after position: UInt64) -> [ChangeSet]? {
        var result: [ChangeSet] = []
        var at = position
        for _ in 0..<10_000 {
            switch log.read(fileID: fileID, after: at, maxBytes: 1 << 20) {
            case .batch(let batch):
                // Decoded as the replica decodes the batch message made of it.
                guard
                    let changes = try? ChangeBatch.changes(
                        fileID: fileID, firstLSN: batch.firstLSN, count: UInt32(batch.count),
                        uncompressedLength: UInt32(batch.uncompressedLength), compressed: batch.frames)
                else { return nil }
                result += changes
                at = batch.lastLSN
            case .caughtUp: return result
            case .notRetained: return nil
            }
        }
        return nil
    }

    func testTheLogSurvivesARestartAndAppliesToACopy() throws {
        // A copy of the partition as it is before any commit is shipped.
        let copyPath = path + "-copy"
        defer { try? FileManager.default.removeItem(atPath: copyPath) }
        var (database, partition, log) = try open()
        let start = partition.lastLSN.rawValue
        let backup = copyPath + ".backup"
        _ = try partition.backup(to: backup)
        try put(partition, 0..<40)
        let fileID = partition.fileID
        XCTAssertEqual(all(log, fileID: fileID, after: start)?.count, 40)
        XCTAssertGreaterThan(log.figures.retainedBytes, 0)
        try database.close()
        // A restart reads the segments back: the same commits, byte for byte, from the disk.
        (database, partition, log) = try open()
        let changes = try XCTUnwrap(all(log, fileID: fileID, after: start))
        XCTAssertEqual(changes.map(\.lsn.rawValue), Array(start + 1...start + 40))
        try put(partition, 40..<45)
        XCTAssertEqual(all(log, fileID: fileID, after: start)?.count, 45)
        // Applied to the copy, they give the primary's content.
        let copy = try Database.create(at: copyPath, region: try Region("eu"))
        try copy.restore(from: backup, as: "users")
        let restored = try copy.partition("users")
        for set in try XCTUnwrap(all(log, fileID: fileID, after: start)) { try restored.apply(set) }
        XCTAssertEqual(try restored.contentChecksum(), try partition.contentChecksum())
        try copy.close()
        try database.close()
        try? FileManager.default.removeItem(atPath: backup)
    }

    func testTheBoundsKeepAFewSegmentsAndOldPositionsAreNotRetained() throws {
        let (database, partition, log) = try open(maxBytes: 40_000)
        let start = partition.lastLSN.rawValue
        try put(partition, 0..<400)
        let figures = log.figures
        XCTAssertLessThanOrEqual(figures.retainedBytes, 40_000)
        XCTAssertGreaterThan(figures.oldestRetained, start, "the oldest commits were dropped")
        XCTAssertLessThanOrEqual(figures.segments, 6)
        XCTAssertEqual(SegmentFile.list(directory: segments).count, figures.segments)
        XCTAssertNil(all(log, fileID: partition.fileID, after: start), "a position before the bound needs a snapshot")
        XCTAssertNotNil(all(log, fileID: partition.fileID, after: figures.oldestRetained))
        XCTAssertFalse(log.retains(fileID: Array(repeating: 0, count: 16), after: figures.newest))
        try database.close()
    }

    /// What every replica has acknowledged is not kept to the bounds, as a replication slot
    /// lets PostgreSQL recycle WAL: the segments wholly below it go, the newest stays.
    func testSegmentsEveryReplicaHasAreReleased() throws {
        // 400 commits take about 375 KB: four segments of 120 KB, within the bound.
        let (database, partition, log) = try open(maxBytes: 480_000)
        let start = partition.lastLSN.rawValue
        try put(partition, 0..<400)
        let before = log.figures
        XCTAssertGreaterThan(before.segments, 2)
        XCTAssertEqual(before.oldestRetained, start, "within the bounds nothing was dropped")
        log.release(through: 0)
        XCTAssertEqual(log.figures.segments, before.segments)
        let halfway = start + 200
        log.release(through: halfway)
        let after = log.figures
        XCTAssertLessThan(after.segments, before.segments)
        XCTAssertGreaterThan(after.oldestRetained, start)
        XCTAssertLessThanOrEqual(after.oldestRetained, halfway, "a commit not every replica has was dropped")
        XCTAssertEqual(all(log, fileID: partition.fileID, after: halfway)?.count, 200)
        log.release(through: before.newest)
        XCTAssertEqual(log.figures.segments, 1, "the newest segment, being appended to, stays")
        XCTAssertEqual(SegmentFile.list(directory: segments).count, 1)
        try database.close()
    }

    func testARestartFillsAGapFromThePartitionsLogAndRepairsATornTail() throws {
        var (database, partition, log) = try open()
        let start = partition.lastLSN.rawValue
        try put(partition, 0..<20)
        let fileID = partition.fileID
        try database.close()
        // Commits the segments never saw (a kill between a commit and its append), made here by
        // committing before the log is opened: the partition's log still holds them.
        database = try Database.open(at: path, region: try Region("eu"))
        _ = try ResidencyDirectory(database: database)
        partition = try database.partition("users")
        try put(partition, 20..<25)
        log = try ShippedLog(directory: segments, partition: partition, retention: .init())
        XCTAssertEqual(all(log, fileID: fileID, after: start)?.map(\.lsn.rawValue), Array(start + 1...start + 25))
        try database.close()
        // A record cut short at the end (a crash mid-append): the tail is cut off, and as the
        // partition's log (checkpointed by the clean close) no longer holds that commit, the
        // log starts afresh at the partition's LSN.
        let newest = try XCTUnwrap(SegmentFile.list(directory: segments).last)
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: newest.path))
        try handle.truncate(atOffset: try handle.seekToEnd() - 7)
        try handle.close()
        (database, partition, log) = try open()
        XCTAssertEqual(log.figures.oldestRetained, partition.lastLSN.rawValue)
        XCTAssertEqual(log.figures.newest, partition.lastLSN.rawValue)
        XCTAssertNil(all(log, fileID: fileID, after: start))
        try put(partition, 25..<30)
        XCTAssertEqual(all(log, fileID: fileID, after: start + 25)?.count, 5)
        try database.close()
    }

    func testCommitsThePartitionLostAreDroppedAndAnotherFilesSegmentsRemoved() throws {
        var (database, partition, log) = try open()
        try put(partition, 0..<10)
        let lastDurable = partition.lastLSN.rawValue
        let fileID = partition.fileID
        try database.close()
        // A record of an LSN the partition does not have (not durable, lost in a crash).
        let newest = try XCTUnwrap(SegmentFile.list(directory: segments).last)
        let file = try SegmentFile.open(path: newest.path, firstLSN: newest.firstLSN)
        let size = try file.size()
        let lost = ChangeSet(
            lsn: LSN(lastDurable + 1), fileID: fileID, pageCount: 8,
            pages: [.init(number: 0, bytes: Array(repeating: 1, count: 4096))])
        try file.write(try SegmentFormat.record(lost, committed: 1), at: size)
        (database, partition, log) = try open()
        XCTAssertEqual(log.figures.newest, lastDurable)
        XCTAssertEqual(try file.size(), size, "the record was cut off")
        try database.close()
        // Compacted while the host was stopped: the segments belong to the old file; `check`
        // notes them and the next start removes them.
        database = try Database.open(at: path, region: try Region("eu"))
        _ = try ResidencyDirectory(database: database)
        _ = try database.partition("users").compact()
        let check = try XCTUnwrap(
            RetainedLogCheck.check(partition: try database.partition("users"), databaseDirectory: path))
        XCTAssertEqual(check.problems, [])
        XCTAssertFalse(check.notes.isEmpty, "\(check) \(SegmentFile.list(directory: segments))")
        try database.close()
        (database, partition, log) = try open()
        XCTAssertEqual(SegmentFile.list(directory: segments).count, 0)
        XCTAssertEqual(log.figures.oldestRetained, partition.lastLSN.rawValue)
        try database.close()
    }

    func testCheckReportsDamageBeforeTheTailAndNotesATornTail() throws {
        let (database, partition, _) = try open(maxBytes: 200_000)
        try put(partition, 0..<200)
        try database.close()
        let files = SegmentFile.list(directory: segments)
        XCTAssertGreaterThan(files.count, 1)
        let check = { () throws -> RetainedLogCheck in
            let opened = try Database.open(at: self.path, region: try Region("eu"))
            defer { try? opened.close() }
            return try XCTUnwrap(
                RetainedLogCheck.check(partition: try opened.partition("users"), databaseDirectory: self.path))
        }
        let clean = try check()
        XCTAssertEqual(clean.problems, [])
        XCTAssertEqual(clean.notes, [])
        XCTAssertEqual(clean.segments, files.count)
        // A torn tail is a note: `pdb serve` truncates it.
        let last = try XCTUnwrap(files.last)
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: last.path))
        try handle.truncate(atOffset: try handle.seekToEnd() - 3)
        try handle.close()
        XCTAssertEqual(try check().problems, [])
        XCTAssertEqual(try check().notes.count, 1)
        // A flipped byte inside the first segment loses commits: a problem naming the file.
        let first = try XCTUnwrap(FileHandle(forUpdatingAtPath: files[0].path))
        try first.seek(toOffset: UInt64(SegmentFormat.headerBytes + 30))
        let byte = try XCTUnwrap(first.readData(ofLength: 1).first)
        try first.seek(toOffset: UInt64(SegmentFormat.headerBytes + 30))
        first.write(Data([byte ^ 0x40]))
        try first.close()
        let damaged = try check()
        XCTAssertEqual(damaged.problems.count, 1)
        XCTAssertEqual(damaged.problems.first?.file, files[0].path)
        // The next start drops the damaged segment and keeps serving the newer ones.
        let (again, reopened, log) = try open(maxBytes: 200_000)
        XCTAssertLessThan(log.figures.segments, files.count)
        XCTAssertNotNil(all(log, fileID: reopened.fileID, after: log.figures.oldestRetained))
        try again.close()
        XCTAssertEqual(try check().problems, [])
    }

    /// The header table of spec/replication.md#retained-segments is the code's layout.
    func testTheSpecsSegmentHeaderTableMatchesTheCode() throws {
        let spec = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("spec/replication.md")
        let text = try String(contentsOf: spec, encoding: .utf8)
        let section = try XCTUnwrap(text.range(of: "### Retained segments"))
        let rows = text[section.upperBound...].split(separator: "\n").drop { !$0.hasPrefix("| 0 ") }
            .prefix { $0.hasPrefix("|") }
            .map { $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) } }
        let fileID = Array(UInt8(1)...16)
        let header = SegmentFormat.header(fileID: fileID, firstLSN: 0x0102_0304_0506_0708)
        XCTAssertEqual(header.count, SegmentFormat.headerBytes)
        var expectedOffset = 0
        for row in rows {
            let offset = try XCTUnwrap(Int(row[0])), size = try XCTUnwrap(Int(row[1]))
            XCTAssertEqual(offset, expectedOffset, "row \(row)")
            let field = Array(header[offset..<offset + size])
            switch row[2] {
            case let name where name.hasPrefix("magic"): XCTAssertEqual(field, Array("PDBSEGMT".utf8))
            case let name where name.hasPrefix("format version"): XCTAssertEqual(field, [0, 1])
            case let name where name.hasPrefix("file id length"): XCTAssertEqual(field, [16])
            case let name where name.hasPrefix("the partition file's id"): XCTAssertEqual(field, fileID)
            case let name where name.hasPrefix("the LSN"): XCTAssertEqual(field, [1, 2, 3, 4, 5, 6, 7, 8])
            default: break
            }
            expectedOffset += size
        }
        XCTAssertEqual(rows.count, 7)
        XCTAssertEqual(expectedOffset, SegmentFormat.headerBytes)
        XCTAssertEqual(SegmentFormat.parseHeader(header), .init(fileID: fileID, firstLSN: 0x0102_0304_0506_0708))
        // A record's overhead is the record table's fixed fields.
        let changes = ChangeSet(
            lsn: LSN(9), fileID: fileID, pageCount: 3, pages: [.init(number: 1, bytes: Array(repeating: 7, count: 512))]
        )
        let record = try SegmentFormat.record(changes, committed: 42)
        guard case .record(let parsed) = SegmentFormat.parseRecord(record, at: 0) else { return XCTFail("no record") }
        XCTAssertEqual(parsed.lsn, 9)
        XCTAssertEqual(parsed.committed, 42)
        XCTAssertEqual(parsed.size, record.count)
        XCTAssertEqual(try SegmentFormat.changes(ofRecord: record, fileID: fileID), changes)
    }
}
