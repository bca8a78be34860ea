import Foundation
import XCTest

@testable import PartitionDB

/// A partition streamed page by page from one database into another (`PartitionSnapshotReader`
/// into `Database.receivePartition`), as a primary's snapshot reaches a replica: the copy is the
/// snapshot's commit; whatever is refused leaves the old copy as it was and no file behind.
final class IncomingPartitionTests: XCTestCase {
    private func database(_ name: String, region: Region = eu) throws -> Database {
        let db = try Database.create(at: try temporaryDirectory(self, name), region: region)
        db.setResolver(MaintenanceTests.subjectsInEU())
        return db
    }

    private func fill(_ p: Partition, _ range: Range<Int>) throws {
        try p.write { tx in
            for i in range {
                try tx.put(
                    "t", bytes(String(format: "k%06d", i)),
                    [UInt8](repeating: UInt8(i & 0xFF), count: i % 50 == 0 ? 20_000 : 150),
                    owner: try SubjectID("s\(i % 10)"))
            }
        }
    }

    /// The snapshot's facts and its pages in runs of `run` pages.
    private func snapshot(_ p: Partition, run: Int = 7) throws -> (reader: PartitionSnapshotReader, chunks: [[UInt8]]) {
        let reader = try p.snapshotReader()
        var chunks: [[UInt8]] = []
        while let chunk = try reader.nextChunk(maxPages: run) { chunks.append(chunk) }
        reader.close()
        return (reader, chunks)
    }

    private func receive(
        _ db: Database, _ reader: PartitionSnapshotReader, lsn: LSN? = nil, pageCount: UInt32? = nil,
        region: Region? = nil
    ) throws -> IncomingPartition {
        try db.receivePartition(
            reader.name, pageSize: reader.pageSize, pageCount: pageCount ?? reader.pageCount, lsn: lsn ?? reader.lsn,
            fileID: reader.fileID, region: region ?? reader.region, replace: true)
    }

    private func leftover(_ db: Database, _ name: String) -> Bool {
        FileManager.default.fileExists(atPath: db.path + "/\(name).pdb.creating")
    }

    func testAStreamedPartitionReplacesTheOldCopyOnlyOnceWhole() throws {
        let primary = try database("primary")
        let p = try primary.createPartition("p")
        try fill(p, 0..<3_000)
        let replica = try database("replica")
        let old = try replica.createPartition("p")
        try fill(old, 0..<10)
        let oldSum = try old.contentChecksum()

        let reader = try p.snapshotReader()
        let expected = try p.contentChecksum()
        // Writes go on while the snapshot is read; the snapshot stays at its commit.
        try fill(p, 3_000..<3_500)
        let incoming = try receive(replica, reader)
        var runs = 0
        while let chunk = try reader.nextChunk(maxPages: 5) {
            try incoming.write(pages: chunk)
            runs += 1
            // The old copy is still there and readable while pages arrive.
            if runs == 2 { XCTAssertEqual(try old.contentChecksum(), oldSum) }
        }
        reader.close()
        XCTAssertEqual(incoming.pagesReceived, reader.pageCount)
        XCTAssertThrowsError(try reader.nextChunk(maxPages: 1)) {
            XCTAssertEqual($0 as? PartitionDBError, .closed(partition: "p"))
        }
        // The old copy must be closed before the new one replaces it.
        XCTAssertThrowsError(try incoming.finish()) {
            guard case .busy = $0 as? PartitionDBError else { return XCTFail("\($0)") }
        }
        XCTAssertFalse(leftover(replica, "p"))
        XCTAssertEqual(try old.contentChecksum(), oldSum)

        // One receive of a name at a time: a second would write the same temporary file.
        let (fresh, chunks) = try snapshot(p)
        let second = try receive(replica, fresh)
        XCTAssertThrowsError(try receive(replica, fresh)) {
            guard case .busy = $0 as? PartitionDBError else { return XCTFail("\($0)") }
        }
        for chunk in chunks { try second.write(pages: chunk) }
        try old.close()
        let summary = try second.finish()
        XCTAssertEqual(summary.lsn, fresh.lsn)
        XCTAssertFalse(leftover(replica, "p"))
        let copy = try replica.partition("p")
        XCTAssertEqual(copy.fileID, p.fileID)
        XCTAssertEqual(copy.lastLSN, p.lastLSN)
        XCTAssertEqual(try copy.contentChecksum(), try p.contentChecksum())
        XCTAssertNotEqual(try copy.contentChecksum(), expected)
        XCTAssertTrue(try copy.check().isClean)
        try replica.close()
        try primary.close()
    }

    func testARefusedSnapshotLeavesTheOldCopyAndNoFile() throws {
        let primary = try database("primary")
        let p = try primary.createPartition("p")
        try fill(p, 0..<2_000)
        let (reader, chunks) = try snapshot(p)
        XCTAssertGreaterThan(chunks.count, 3)
        let replica = try database("replica")
        let old = try replica.createPartition("p")
        try fill(old, 0..<10)
        let oldSum = try old.contentChecksum()
        let oldLSN = old.lastLSN
        try old.close()
        let lastRun = UInt32(chunks.last!.count / reader.pageSize)

        /// A receive announced with the snapshot's facts (or another LSN or page count) that `body`
        /// makes fail.
        func refused(
            _ name: String, _ words: String, lsn: LSN? = nil, pageCount: UInt32? = nil,
            _ body: (IncomingPartition) throws -> Void
        ) throws {
            let incoming = try receive(replica, reader, lsn: lsn, pageCount: pageCount)
            XCTAssertThrowsError(try body(incoming), name) { error in
                guard case .badSnapshot(let partition, let reason) = error as? PartitionDBError else {
                    return XCTFail("\(name): \(error)")
                }
                XCTAssertEqual(partition, "p")
                XCTAssertTrue(reason.contains(words), "\(name): \(reason)")
            }
            XCTAssertFalse(leftover(replica, "p"), name)
            // Refused once, refused for good.
            XCTAssertThrowsError(try incoming.write(pages: chunks[0]), name)
            XCTAssertThrowsError(try incoming.finish(), name)
            let copy = try replica.partition("p")
            XCTAssertEqual(copy.lastLSN, oldLSN, name)
            XCTAssertEqual(try copy.contentChecksum(), oldSum, name)
            try copy.close()
        }
        try refused("a damaged page", "page 9 fails its check (checksum mismatch)") { incoming in
            var damaged = chunks[1]
            damaged[2 * reader.pageSize + 100] ^= 1
            try incoming.write(pages: chunks[0])
            try incoming.write(pages: damaged)
        }
        try refused("a page out of place", "page 7 fails its check") { incoming in
            try incoming.write(pages: chunks[0])
            try incoming.write(pages: chunks[2])
        }
        try refused("pages beyond the count", "pages beyond the announced count of \(reader.pageCount)") { incoming in
            for chunk in chunks { try incoming.write(pages: chunk) }
            try incoming.write(pages: chunks[1])
        }
        try refused("a snapshot cut short", "only \(reader.pageCount - lastRun) of the announced") { incoming in
            for chunk in chunks.dropLast() { try incoming.write(pages: chunk) }
            try incoming.finish()
        }
        try refused("a header of another commit", "page 0 gives another LSN", lsn: LSN(reader.lsn.rawValue + 1)) {
            try $0.write(pages: chunks[0])
        }
        try refused(
            "a header of another page count", "page 0 gives another page count", pageCount: reader.pageCount + 1
        ) {
            try $0.write(pages: chunks[0])
        }
        try refused("a run of part of a page", "is not whole pages") { incoming in
            try incoming.write(pages: Array(chunks[0].dropLast()))
        }
        // Another region is refused before anything is created.
        XCTAssertThrowsError(try receive(replica, reader, region: us)) {
            guard case .regionMismatch = $0 as? PartitionDBError else { return XCTFail("\($0)") }
        }
        XCTAssertFalse(leftover(replica, "p"))
        try replica.close()
        try primary.close()
    }

    /// What a receive killed mid-way leaves, the temporary file, is removed by the next receive
    /// (and by the next open of the database), and the old copy stays what it was meanwhile.
    func testTheLeftoverOfAKilledReceiveIsRemoved() throws {
        let primary = try database("primary")
        let p = try primary.createPartition("p")
        try fill(p, 0..<500)
        let (reader, chunks) = try snapshot(p)
        let replica = try database("replica")
        let old = try replica.createPartition("p")
        try fill(old, 0..<10)
        let oldSum = try old.contentChecksum()
        try old.close()
        let path = replica.path
        XCTAssertTrue(FileManager.default.createFile(atPath: path + "/p.pdb.creating", contents: Data(chunks[0])))
        let incoming = try receive(replica, reader)
        for chunk in chunks { try incoming.write(pages: chunk) }
        try incoming.finish()
        XCTAssertEqual(try replica.partition("p").contentChecksum(), try p.contentChecksum())
        try replica.close()

        XCTAssertTrue(FileManager.default.createFile(atPath: path + "/p.pdb.creating", contents: Data(chunks[0])))
        let reopened = try Database.open(at: path, region: eu)
        XCTAssertFalse(leftover(reopened, "p"))
        XCTAssertNotEqual(try reopened.partition("p").contentChecksum(), oldSum)
        try reopened.close()
        try primary.close()
    }
}
