import Foundation
import XCTest

/// init, create-partition, home, put, get, del, info and usage errors through the real binary.
final class CommandLineTests: PDBTestCase {
    func testInitAndCreatePartition() throws {
        let created = try pdb("init", db, "--region", "eu", "--json")
        assertExit(created, 0)
        let report = try created.object()
        XCTAssertEqual(report["region"] as? String, "eu")
        XCTAssertEqual(report["page_size"] as? Int, 4096)

        let partition = try pdb("create-partition", db, "users", "--json")
        assertExit(partition, 0)
        XCTAssertEqual(try partition.object()["partition"] as? String, "users")
        XCTAssertEqual(try partition.object()["region"] as? String, "eu")
        XCTAssertTrue(FileManager.default.fileExists(atPath: db + "/users.pdb"))

        let again = try pdb("init", db, "--region", "eu")
        assertExit(again, 1)
        XCTAssertTrue(again.stderr.hasPrefix("error: "), again.stderr)
    }

    func testCreatePartitionOfAnotherRegionIsRefusedAndCreatesNothing() throws {
        assertExit(try pdb("init", db, "--region", "eu"), 0)
        let refused = try pdb("create-partition", db, "us-users", "--region", "us", "--json")
        assertExit(refused, 1)
        XCTAssertEqual(try refused.errorCode(), "region_mismatch")
        XCTAssertFalse(FileManager.default.fileExists(atPath: db + "/us-users.pdb"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: db + "/us-users.pdb-log"))

        let human = try pdb("create-partition", db, "us-users", "--region", "us")
        assertExit(human, 1)
        XCTAssertTrue(human.stderr.hasPrefix("error: "), human.stderr)
        XCTAssertEqual(human.stdout, "")
        let names = try pdb("info", db, "--json").object()["partitions"] as? [[String: Any]]
        XCTAssertEqual(names?.compactMap { $0["name"] as? String }, ["global"])
    }

    func testHomes() throws {
        assertExit(try pdb("init", db, "--region", "eu"), 0)
        let first = try pdb("home", "set", db, "alice", "eu", "--json")
        assertExit(first, 0)
        XCTAssertEqual(try first.object()["created"] as? Bool, true)
        let same = try pdb("home", "set", db, "alice", "eu", "--json")
        assertExit(same, 0)
        XCTAssertEqual(try same.object()["created"] as? Bool, false)

        let other = try pdb("home", "set", db, "alice", "us", "--json")
        assertExit(other, 1)
        XCTAssertEqual(try other.errorCode(), "already_registered")
        let otherHuman = try pdb("home", "set", db, "alice", "us")
        assertExit(otherHuman, 1)
        XCTAssertTrue(otherHuman.stderr.contains("already registered"), otherHuman.stderr)

        let home = try pdb("home", "get", db, "alice")
        assertExit(home, 0)
        XCTAssertEqual(home.stdout, "eu\n")
        let none = try pdb("home", "get", db, "carol", "--json")
        assertExit(none, 1)
        XCTAssertEqual(try none.errorCode(), "no_home")

        assertExit(try pdb("home", "set", db, "bob", "us"), 0)
        let list = try pdb("home", "list", db, "--json")
        assertExit(list, 0)
        let homes = try XCTUnwrap(try list.object()["homes"] as? [[String: String]])
        XCTAssertEqual(homes, [["subject": "alice", "home": "eu"], ["subject": "bob", "home": "us"]])
        let listHuman = try pdb("home", "list", db)
        XCTAssertEqual(listHuman.lines, ["alice  eu", "bob    us"])
    }

    func testPutGetDel() throws {
        try makeDatabase()
        let put = try pdb("put", db, "users", "profile", "alice:1", "Alice", "--owner", "alice", "--json")
        assertExit(put, 0)
        XCTAssertEqual(try put.object()["committed"] as? Int, 1)
        let human = try pdb("put", db, "users", "profile", "alice:2", "Second", "--owner", "alice")
        assertExit(human, 0)
        XCTAssertEqual(human.stdout, "committed at LSN 2\n")

        let get = try pdb("get", db, "users", "profile", "alice:1")
        assertExit(get, 0)
        XCTAssertEqual(get.stdout, "Alice\n")
        let getJSON = try pdb("get", db, "users", "profile", "alice:1", "--json")
        assertExit(getJSON, 0)
        let record = try getJSON.object()
        XCTAssertEqual(record["op"] as? String, "put")
        XCTAssertEqual(record["table"] as? String, "profile")
        XCTAssertEqual(record["key"] as? String, "alice:1")
        XCTAssertEqual(record["value"] as? String, "Alice")
        XCTAssertEqual(record["owner"] as? String, "alice")

        // Bytes that are not UTF-8: base64 in, base64 out.
        let binaryKey = Data([0xFF, 0x00, 0x01]).base64EncodedString()
        let binaryValue = Data([0xC3, 0x28, 0x80]).base64EncodedString()
        assertExit(
            try pdb(
                "put", db, "users", "profile", binaryKey, binaryValue, "--key-b64", "--value-b64", "--owner", "alice"),
            0)
        let binary = try pdb("get", db, "users", "profile", binaryKey, "--key-b64", "--json")
        assertExit(binary, 0)
        XCTAssertEqual(try binary.object()["key_b64"] as? String, binaryKey)
        XCTAssertEqual(try binary.object()["value_b64"] as? String, binaryValue)
        XCTAssertNil(try binary.object()["key"])
        let binaryHuman = try pdb("get", db, "users", "profile", binaryKey, "--key-b64")
        XCTAssertEqual(binaryHuman.stdout, binaryValue + "\n")
        XCTAssertTrue(binaryHuman.stderr.contains("base64"))

        let del = try pdb("del", db, "users", "profile", "alice:1", "--json")
        assertExit(del, 0)
        XCTAssertEqual(try del.object()["deleted"] as? Bool, true)
        XCTAssertEqual(try del.object()["committed"] as? Int, 4)
        let gone = try pdb("get", db, "users", "profile", "alice:1", "--json")
        assertExit(gone, 1)
        XCTAssertEqual(try gone.errorCode(), "not_found")
        let delAgain = try pdb("del", db, "users", "profile", "alice:1", "--json")
        assertExit(delAgain, 1)
        XCTAssertEqual(try delAgain.errorCode(), "not_found")
        // The missed delete committed nothing.
        let info = try pdb("info", db, "users", "--json").object()
        let partitions = try XCTUnwrap(info["partitions"] as? [[String: Any]])
        XCTAssertEqual(partitions.first?["last_lsn"] as? Int, 4)
        XCTAssertEqual(partitions.first?["tables"] as? [String: Int], ["profile": 2])
    }

    func testCrossRegionAndUnknownOwnersAreRefused() throws {
        try makeDatabase()
        let bob = try pdb("put", db, "users", "profile", "bob:1", "Bob", "--owner", "bob", "--json")
        assertExit(bob, 1)
        XCTAssertEqual(try bob.errorCode(), "cross_region_write")
        let bobHuman = try pdb("put", db, "users", "profile", "bob:1", "Bob", "--owner", "bob")
        assertExit(bobHuman, 1)
        XCTAssertTrue(bobHuman.stderr.hasPrefix("error: refused"), bobHuman.stderr)

        let carol = try pdb("put", db, "users", "profile", "carol:1", "Carol", "--owner", "carol", "--json")
        assertExit(carol, 1)
        XCTAssertEqual(try carol.errorCode(), "unknown_home")

        let noOwner = try pdb("put", db, "users", "profile", "x", "y", "--json")
        assertExit(noOwner, 1)
        XCTAssertEqual(try noOwner.errorCode(), "owner_required")

        // Nothing was written: the table was never even created.
        let scan = try pdb("scan", db, "users", "profile", "--json")
        assertExit(scan, 1)
        XCTAssertEqual(try scan.errorCode(), "no_such_table")
    }

    func testInfo() throws {
        try makeDatabase()
        assertExit(try pdb("put", db, "users", "a", "k", "v", "--owner", "alice"), 0)
        let info = try pdb("info", db, "--json")
        assertExit(info, 0)
        let report = try info.object()
        XCTAssertEqual(report["region"] as? String, "eu")
        let partitions = try XCTUnwrap(report["partitions"] as? [[String: Any]])
        XCTAssertEqual(partitions.compactMap { $0["name"] as? String }, ["global", "users"])
        let users = partitions[1]
        XCTAssertEqual(users["region"] as? String, "eu")
        XCTAssertEqual(users["page_size"] as? Int, 4096)
        XCTAssertEqual(users["last_lsn"] as? Int, 1)
        XCTAssertEqual(users["tables"] as? [String: Int], ["a": 1])
        for field in ["page_count", "free_pages", "log_frames"] { XCTAssertNotNil(users[field] as? Int, field) }
        XCTAssertEqual((users["file_id"] as? String)?.count, 32)
        XCTAssertEqual(partitions[0]["tables"] as? [String: Int], ["homes": 2])

        let human = try pdb("info", db)
        assertExit(human, 0)
        XCTAssertTrue(human.stdout.contains("partition users (region eu)"), human.stdout)
        assertExit(try pdb("info", db, "nope"), 1)
    }

    func testUsageErrorsExit64() throws {
        try makeDatabase()
        let badBase64 = try pdb("put", db, "users", "t", "k", "!!", "--value-b64", "--owner", "alice")
        assertExit(badBase64, 64)
        XCTAssertTrue(badBase64.stderr.contains("VALUE is not valid base64"), badBase64.stderr)
        let json = try pdb("get", db, "users", "t", "%%", "--key-b64", "--json")
        assertExit(json, 64)
        XCTAssertEqual(try json.errorCode(), "usage")
        assertExit(try pdb("init", root.appendingPathComponent("other").path, "--region", "EU"), 64)
        assertExit(try pdb("init", root.appendingPathComponent("other").path, "--region", "global"), 64)
        assertExit(
            try pdb("init", root.appendingPathComponent("other").path, "--region", "eu", "--page-size", "5000"), 64)
        assertExit(try pdb("scan", db, "users", "t", "--limit", "-1"), 64)
        assertExit(try pdb("scan", db, "users", "t", "--with-commit"), 64)
        assertExit(try pdb("home", "set", db, "", "eu"), 64)
        assertExit(try pdb("frobnicate"), 64)
        let missing = try pdb("info", root.appendingPathComponent("nothing").path, "--json")
        assertExit(missing, 1)
        XCTAssertEqual(try missing.errorCode(), "no_such_database")
    }
}
