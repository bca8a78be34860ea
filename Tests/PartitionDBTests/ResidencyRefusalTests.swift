import Foundation
import XCTest

@testable import PartitionDB

/// Guarantees 1 and 2 in the engine: no cross-region write, no partition of another region.
final class ResidencyRefusalTests: XCTestCase {
    func fileBytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    func testWrongHomeIsRefusedAndTheTransactionGoesOn() throws {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        let resolver = FixedResolver()
        resolver.set("alice", eu)
        resolver.set("bob", us)
        db.setResolver(resolver)
        let users = try db.createPartition("users")
        try users.write { tx in
            try tx.put("profiles", bytes("alice"), bytes("a"), owner: try SubjectID("alice"))
            XCTAssertThrowsError(try tx.put("profiles", bytes("bob"), bytes("b"), owner: try SubjectID("bob"))) {
                error in
                XCTAssertEqual(
                    error as? PartitionDBError, .crossRegionWrite(owner: "bob", home: "us", partition: "users"))
            }
            XCTAssertThrowsError(try tx.put("profiles", bytes("carol"), bytes("c"), owner: try SubjectID("carol"))) {
                XCTAssertEqual($0 as? PartitionDBError, .unknownHome(owner: "carol", partition: "users"))
            }
            XCTAssertThrowsError(try tx.put("profiles", bytes("nobody"), bytes("x"))) {
                XCTAssertEqual($0 as? PartitionDBError, .ownerRequired(partition: "users"))
            }
            // The transaction continues after a refusal.
            try tx.put("profiles", bytes("alice2"), bytes("a2"), owner: try SubjectID("alice"))
        }
        try users.read { tx in
            XCTAssertEqual(try tx.count("profiles"), 2)
            XCTAssertNil(try tx.get("profiles", bytes("bob")))
            XCTAssertNil(try tx.get("profiles", bytes("carol")))
            XCTAssertTrue(try tx.keys(ownedBy: try SubjectID("bob")).isEmpty)
        }
        XCTAssertThrowsError(
            try db.globalPartition().write { try $0.put("t", bytes("k"), bytes("v"), owner: try SubjectID("alice")) }
        ) {
            XCTAssertEqual($0 as? PartitionDBError, .ownerNotAllowed(partition: "global"))
        }
        XCTAssertTrue(try users.check().isClean)
        try db.close()
    }

    func testRefusedWriteLeavesFilesUnchanged() throws {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        let resolver = FixedResolver()
        resolver.set("alice", eu)
        resolver.set("bob", us)
        db.setResolver(resolver)
        let users = try db.createPartition("users")
        try users.write { try $0.put("p", bytes("a"), bytes("a"), owner: try SubjectID("alice")) }
        let main = fileBytes(path + "/users.pdb")
        let log = fileBytes(path + "/users.pdb-log")
        XCTAssertThrowsError(
            try users.write { tx in try tx.put("p", bytes("b"), bytes("secret"), owner: try SubjectID("bob")) })
        XCTAssertEqual(fileBytes(path + "/users.pdb"), main)
        XCTAssertEqual(fileBytes(path + "/users.pdb-log"), log)
        try db.close()
        // Nothing of the refused record is anywhere in the files.
        let all = (fileBytes(path + "/users.pdb") ?? Data()) + (fileBytes(path + "/users.pdb-log") ?? Data())
        XCTAssertNil(all.range(of: Data("secret".utf8)))
    }

    func testPartitionOfAnotherRegionIsRefusedOnCreateAndOpen() throws {
        let euPath = try temporaryDirectory(self, "eu")
        let usPath = try temporaryDirectory(self, "us")
        let euDB = try Database.create(at: euPath, region: eu)
        XCTAssertThrowsError(try euDB.createPartition("americans", region: us)) {
            guard case .regionMismatch = $0 as? PartitionDBError else { return XCTFail("\($0)") }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: euPath + "/americans.pdb"))
        XCTAssertThrowsError(try euDB.createPartition("fake", region: .global))

        let usDB = try Database.create(at: usPath, region: us)
        try usDB.createPartition("americans")
        try usDB.close()
        try FileManager.default.copyItem(atPath: usPath + "/americans.pdb", toPath: euPath + "/americans.pdb")
        let before = fileBytes(euPath + "/americans.pdb")
        XCTAssertThrowsError(try euDB.partition("americans")) {
            XCTAssertEqual(
                $0 as? PartitionDBError,
                .regionMismatch(path: euPath + "/americans.pdb", expected: "eu", found: "us"))
        }
        XCTAssertEqual(fileBytes(euPath + "/americans.pdb"), before)
        XCTAssertFalse(FileManager.default.fileExists(atPath: euPath + "/americans.pdb-log"))
        try euDB.close()

        // A database directory of another region is refused as a whole.
        XCTAssertThrowsError(try Database.open(at: usPath, region: eu)) {
            guard case .regionMismatch = $0 as? PartitionDBError else { return XCTFail("\($0)") }
        }
    }

    func testSecondOpenIsRefusedWithTheLockHoldersPID() throws {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        XCTAssertThrowsError(try Database.open(at: path, region: eu)) {
            XCTAssertEqual($0 as? PartitionDBError, .locked(path: path + "/LOCK", pid: getpid()))
        }
        try db.close()
        let again = try Database.open(at: path, region: eu)
        try again.close()
    }
}
