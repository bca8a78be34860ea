import Foundation
import XCTest

@testable import PartitionDB

/// `Options.readOnly`: nothing created, nothing written, the log's commits read from the log.
final class ReadOnlyTests: XCTestCase {
    private var readOnly: Options {
        var options = Options()
        options.readOnly = true
        return options
    }

    /// The bytes of every file in `path`, by name.
    private func files(_ path: String) throws -> [String: Data] {
        var result: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: path) {
            result[name] = try Data(contentsOf: URL(fileURLWithPath: path + "/" + name))
        }
        return result
    }

    /// A copy taken while the writer still runs holds commits only in the logs: a read-only open
    /// recovers them in memory, answers from the log, and changes no byte and creates no file.
    func testReadOnlyOpenReadsTheLogAndChangesNothing() throws {
        let path = try temporaryDirectory(self)
        let copy = try temporaryDirectory(self, "copy")
        var options = Options()
        options.autoCheckpointFrames = 100_000
        let db = try Database.create(at: path, region: eu, options: options)
        let resolver = FixedResolver()
        resolver.set("alice", eu)
        db.setResolver(resolver)
        let users = try db.createPartition("users")
        for i in 0..<50 {
            try users.write { tx in try tx.put("t", bytes("k\(i)"), bytes("v\(i)"), owner: SubjectID("alice")) }
        }
        try db.globalPartition().write { tx in try tx.put("g", bytes("k"), bytes("v")) }
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: path) where name != "LOCK" {
            try FileManager.default.copyItem(atPath: path + "/" + name, toPath: copy + "/" + name)
        }
        try db.close()
        XCTAssertGreaterThan(try files(copy)["users.pdb-log"]?.count ?? 0, 0, "the copy's log holds the commits")
        // The LOCK the read-only open makes (empty) is the one file it may add, in a writable directory.
        FileManager.default.createFile(atPath: copy + "/LOCK", contents: Data())
        let before = try files(copy)

        let reader = try Database.open(at: copy, region: eu, options: readOnly)
        let partition = try reader.partition("users")
        XCTAssertEqual(try partition.read { try $0.get("t", bytes("k49")) }, bytes("v49"))
        XCTAssertEqual(try partition.read { try $0.count("t") }, 50)
        XCTAssertEqual(try reader.globalPartition().read { try $0.get("g", bytes("k")) }, bytes("v"))
        XCTAssertTrue(try partition.check().isClean)
        XCTAssertGreaterThan(try partition.info().logFrames, 0, "nothing was checkpointed")

        // Writes are refused with a typed error, whatever the path.
        XCTAssertThrowsError(try partition.write { tx in try tx.put("t", bytes("x"), bytes("y")) }) { error in
            guard case .readOnly = error as? PartitionDBError else { return XCTFail("expected readOnly, got \(error)") }
        }
        XCTAssertThrowsError(try partition.checkpoint()) { error in
            guard case .readOnly = error as? PartitionDBError else { return XCTFail("expected readOnly, got \(error)") }
        }
        XCTAssertThrowsError(try partition.compact()) { error in
            guard case .readOnly = error as? PartitionDBError else { return XCTFail("expected readOnly, got \(error)") }
        }
        XCTAssertThrowsError(try reader.createPartition("more")) { error in
            guard case .readOnly = error as? PartitionDBError else { return XCTFail("expected readOnly, got \(error)") }
        }
        try reader.close()
        XCTAssertEqual(try files(copy), before, "a read-only open changed or created files")
    }

    /// Without a log file, a read-only open creates none.
    func testReadOnlyOpenCreatesNoLog() throws {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        try db.globalPartition().write { tx in try tx.put("g", bytes("k"), bytes("v")) }
        try db.close()
        try FileManager.default.removeItem(atPath: path + "/global.pdb-log")
        let before = try files(path)

        let reader = try Database.open(at: path, region: eu, options: readOnly)
        XCTAssertEqual(try reader.globalPartition().read { try $0.get("g", bytes("k")) }, bytes("v"))
        try reader.close()
        XCTAssertEqual(try files(path), before)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + "/global.pdb-log"))
    }

    /// Read-only opens share the lock; a writer is refused while they hold it, and a read-only
    /// open is refused (naming the writer) while a writer holds it.
    func testReadersShareTheLockAndExcludeAWriter() throws {
        let path = try temporaryDirectory(self)
        try Database.create(at: path, region: eu).close()
        let first = try Database.open(at: path, region: eu, options: readOnly)
        let second = try Database.open(at: path, region: eu, options: readOnly)
        XCTAssertThrowsError(try Database.open(at: path, region: eu)) { error in
            XCTAssertEqual(error as? PartitionDBError, .lockedByReaders(path: path + "/LOCK"))
            XCTAssertEqual((error as? PartitionDBError)?.code, "locked")
        }
        try first.close()
        try second.close()

        let writer = try Database.open(at: path, region: eu)
        XCTAssertThrowsError(try Database.open(at: path, region: eu, options: readOnly)) { error in
            XCTAssertEqual(error as? PartitionDBError, .locked(path: path + "/LOCK", pid: getpid()))
        }
        try writer.close()
    }
}
