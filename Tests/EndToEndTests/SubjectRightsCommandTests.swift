import Foundation
import PartitionDB
import Residency
import XCTest

/// `pdb export` (a subject's records, through the owner index) and `pdb audit` (every record in
/// its owner's home region, a directory of pseudonyms): spec/cli.md#export, spec/cli.md#audit.
final class SubjectRightsCommandTests: ClusterTestCase {
    func put(_ table: String, _ key: String, _ value: String, owner: String) -> String {
        #"{"op":"put","table":"\#(table)","key":"\#(key)","value":"\#(value)","owner":"\#(owner)"}"#
    }

    func testExportGivesEveryRecordOfTheSubjectAsApplyLines() throws {
        try makeDatabase()
        assertExit(try pdb("home", "set", db, "carol", "eu"), 0)
        assertExit(try pdb("create-partition", db, "orders"), 0)
        let users = [
            put("profile", "alice", "Alice A.", owner: "alice"), put("profile", "carol", "Carol C.", owner: "carol"),
            put("notes", "n1", "alice's note", owner: "alice"), #"{"op":"commit"}"#,
        ]
        assertExit(try pdb("apply", db, "users", stdin: users.joined(separator: "\n") + "\n"), 0)
        let orders = [put("orders", "o-1", "2 books", owner: "alice"), #"{"op":"commit"}"#]
        assertExit(try pdb("apply", db, "orders", stdin: orders.joined(separator: "\n") + "\n"), 0)

        let export = try pdb("export", db, "alice")
        assertExit(export, 0)
        let lines = try export.objects()
        XCTAssertEqual(
            lines.map { "\($0["op"] ?? "?") \($0["partition"] ?? "?") \($0["table"] ?? "-") \($0["key"] ?? "-")" },
            [
                "put orders orders o-1", "commit orders - -", "put users profile alice", "put users notes n1",
                "commit users - -",
            ])
        XCTAssertEqual(lines[3]["value"] as? String, "alice's note")
        XCTAssertEqual(lines[3]["owner"] as? String, "alice")
        XCTAssertEqual(lines[4]["records"] as? Int, 2)
        XCTAssertEqual(lines[4]["lsn"] as? Int, 1, "the commit the partition was read at")
        XCTAssertFalse(export.stdout.contains("Carol"), "another subject's records are not exported")

        // The lines of one partition are apply's input: they rebuild the records elsewhere.
        let copy = root.appendingPathComponent("copy").path
        assertExit(try pdb("init", copy, "--region", "eu"), 0)
        assertExit(try pdb("create-partition", copy, "users"), 0)
        assertExit(try pdb("home", "set", copy, "alice", "eu"), 0)
        let usersLines = export.lines.filter { $0.contains(#""partition":"users""#) }.joined(separator: "\n")
        let applied = try pdb("apply", copy, "users", stdin: usersLines + "\n")
        assertExit(applied, 0)
        XCTAssertEqual(try pdb("export", copy, "alice").lines.filter { $0.contains("put") }.count, 2)

        let nobody = try pdb("export", db, "dave")
        assertExit(nobody, 0)
        XCTAssertEqual(nobody.stdout, "", "a subject without records here gets nothing")
        assertExit(try pdb("export", db, ""), 64)
    }

    func testTheAuditIsCleanAndFindsPlantedViolations() throws {
        try makeDatabase()
        let users = [put("profile", "alice", "Alice A.", owner: "alice"), #"{"op":"commit"}"#]
        assertExit(try pdb("apply", db, "users", stdin: users.joined(separator: "\n") + "\n"), 0)
        let clean = try pdb("audit", db, "--json")
        assertExit(clean, 0)
        let report = try clean.object()
        XCTAssertEqual(report["clean"] as? Bool, true)
        XCTAssertEqual((report["directory"] as? [String: Any])?["homes"] as? Int, 2)
        let partitions = try XCTUnwrap(report["partitions"] as? [[String: Any]])
        XCTAssertEqual(partitions.first?["records"] as? Int, 1)
        XCTAssertEqual(partitions.first?["subjects"] as? Int, 1)
        let text = try pdb("audit", db)
        assertExit(text, 0)
        XCTAssertEqual(text.lines.last, "clean: every record is in its subject's home region (eu)")

        // Behind the directory's back (the engine's reserved write, as a test hook): alice's
        // home moves to us, an e-mail address becomes a subject id, and a table of free text
        // appears in the directory.
        let database = try Database.openAsCreated(at: db)
        let global = try database.globalPartition()
        try global.writeReserved { tx in
            try tx.put(ResidencyDirectory.table, Array("alice".utf8), Array("us".utf8))
            try tx.put(ResidencyDirectory.table, Array("ana@example.com".utf8), Array("eu".utf8))
        }
        try global.write { tx in try tx.put("contacts", Array("ana".utf8), Array("ana@example.com".utf8)) }
        try database.close()

        let found = try pdb("audit", db, "--json")
        assertExit(found, 1)
        let violations = try XCTUnwrap(try found.object()["violations"] as? [[String: Any]])
        XCTAssertEqual(
            violations.map { "\($0["kind"] ?? "?") \($0["table"] ?? "-") \($0["key"] ?? "-")" }.sorted(),
            [
                "foreign_record profile alice", "personal_data_shaped homes ana@example.com",
                "unexpected_table contacts -",
            ])
        let people = try pdb("audit", db)
        assertExit(people, 1)
        XCTAssertTrue(
            people.lines.contains(
                "violation foreign_record: users: table profile key alice belongs to alice, whose home is us, not eu"),
            people.stdout)
        XCTAssertEqual(people.lines.last, "3 violations")
    }

    /// On a running cluster, through `pdb://`: a replica exports what its primary committed, and
    /// every host's audit is clean, the keys and pseudo-subjects the auth layer made at start
    /// included.
    func testExportAndAuditOnRunningHosts() throws {
        try layOut()
        for host in ["eu-1", "eu-2", "us-1"] { try start(host) }
        assertExit(try remote("home set", "eu-1", "alice", "eu"), 0)
        let lines = [put("profile", "alice", "Alice A.", owner: "alice"), #"{"op":"commit"}"#]
        assertExit(try remote("apply", "eu-2", "users", stdin: lines.joined(separator: "\n") + "\n"), 0)
        let export = try remote("export", "eu-2", "alice")
        assertExit(export, 0)
        XCTAssertEqual(try export.objects().first?["value"] as? String, "Alice A.")
        XCTAssertEqual(try export.objects().last?["partition"] as? String, "users")
        // The auth layer's first keys, made at start, are part of what the audit reads.
        let deadline = Date().addingTimeInterval(30)
        for host in ["eu-1", "eu-2", "us-1"] {
            var report: [String: Any] = [:]
            repeat {
                let audit = try remote("audit", host, "--json")
                assertExit(audit, 0)
                report = try audit.object()
                if (report["directory"] as? [String: Any])?["published_keys"] as? Int == 2 { break }
                usleep(100_000)
            } while Date() < deadline
            XCTAssertEqual(report["clean"] as? Bool, true, "\(host): \(report)")
            XCTAssertEqual((report["directory"] as? [String: Any])?["published_keys"] as? Int, 2, host)
        }
    }

    func files(under folder: String, containing text: String) -> [String] {
        Self.files(under: folder, containing: text)
    }

    func testAnErasureLeavesNoByteOfTheSubjectInTheDatabasesFiles() throws {
        try makeDatabase()
        assertExit(try pdb("home", "set", db, "carol", "eu"), 0)
        assertExit(try pdb("create-partition", db, "orders"), 0)
        let secret = "SECRET-\(UUID().uuidString)"
        let big = String(repeating: secret, count: 3_000)  // overflow pages
        var users: [String] = []
        for version in 0..<5 {  // old versions of a record end on free pages
            users += [put("profile", "alice", "\(secret) v\(version)", owner: "alice"), #"{"op":"commit"}"#]
        }
        users += [
            put("notes", "n1", big, owner: "alice"), put("profile", "carol", "Carol C.", owner: "carol"),
            #"{"op":"commit"}"#,
        ]
        assertExit(try pdb("apply", db, "users", stdin: users.joined(separator: "\n") + "\n"), 0)
        let backup = root.appendingPathComponent("users-before.backup").path
        assertExit(try pdb("backup", db, "users", backup), 0)
        // A second partition, written without fsync.
        let orders = [put("orders", "o-1", "\(secret) order", owner: "alice"), #"{"op":"commit"}"#]
        assertExit(try pdb("apply", db, "orders", "--no-sync", stdin: orders.joined(separator: "\n") + "\n"), 0)
        // A retained shipped log left by a host that ran here.
        let shipped = db + "/users.pdb-shipped"
        try FileManager.default.createDirectory(atPath: shipped, withIntermediateDirectories: true)
        try Data(secret.utf8).write(to: URL(fileURLWithPath: shipped + "/00000000000000000001.segment"))
        XCTAssertFalse(files(under: db, containing: secret).isEmpty, "the test wrote what it erases")

        let erase = try pdb("erase", db, "alice", "--json")
        assertExit(erase, 0)
        let record = try erase.object()
        let partitions = try XCTUnwrap(record["partitions"] as? [[String: Any]])
        XCTAssertEqual(partitions.map { $0["partition"] as? String }, ["orders", "users"])
        XCTAssertEqual(partitions.map { $0["records"] as? Int }, [1, 2])
        XCTAssertEqual(record["retained_segments_removed"] as? Int, 1)
        XCTAssertEqual(record["backups_still_holding"] as? [String], [backup])
        XCTAssertEqual(files(under: db, containing: secret), [], "no byte of the erased records is left")
        XCTAssertEqual(files(under: db, containing: String(secret.prefix(20))), [])
        let log = try String(contentsOfFile: db + "/erasures.log", encoding: .utf8)
        XCTAssertTrue(log.contains(#""subject":"alice""#), log)
        XCTAssertFalse(log.contains("SECRET"), "the erasure log holds no personal data")

        // What was not the subject's is all there, and the database is sound.
        let carol = try pdb("export", db, "carol")
        assertExit(carol, 0)
        XCTAssertEqual(try carol.objects().first?["value"] as? String, "Carol C.")
        XCTAssertEqual(try pdb("export", db, "alice").stdout, "")
        assertExit(try pdb("check", db), 0)
        assertExit(try pdb("audit", db), 0)
        let text = try pdb("erase", db, "alice")
        assertExit(text, 0)
        XCTAssertEqual(text.lines.first, "alice has no records here; the request is recorded in erasures.log")

        // A record of the erased subject written again is an audit violation.
        assertExit(try pdb("put", db, "users", "profile", "alice", "back", "--owner", "alice"), 0)
        let audit = try pdb("audit", db, "--json")
        assertExit(audit, 1)
        let kinds = try XCTUnwrap(try audit.object()["violations"] as? [[String: Any]]).map { $0["kind"] as? String }
        XCTAssertEqual(kinds, ["erased_subject_has_records"])
    }

    /// Starts eu-1 and eu-2 and writes, through `host`, five versions of alice's profile holding
    /// a distinctive value (returned) and carol's profile; returns once eu-2's copy matches.
    func startWithRecords(writingThrough host: String) throws -> String {
        try layOut()
        for host in ["eu-1", "eu-2"] { try start(host) }
        assertExit(try remote("home set", "eu-1", "alice", "eu"), 0)
        assertExit(try remote("home set", "eu-1", "carol", "eu"), 0)
        let secret = "SECRET-\(UUID().uuidString)"
        var lines: [String] = []
        for version in 0..<5 {
            lines += [put("profile", "alice", "\(secret) v\(version)", owner: "alice"), #"{"op":"commit"}"#]
        }
        lines += [put("profile", "carol", "Carol C.", owner: "carol"), #"{"op":"commit"}"#]
        assertExit(try remote("apply", host, "users", stdin: lines.joined(separator: "\n") + "\n"), 0)
        try assertConverges("users", primary: "eu-1", replicas: ["eu-2"])
        return secret
    }

    /// On a cluster: the primary's erasure (on its stopped host's directory) rewrites its files;
    /// when it is back, its replica catches up by snapshot, and no file of either host holds a
    /// byte of the subject's records.
    func testAnErasureOnThePrimaryReachesItsReplicaBySnapshot() throws {
        let secret = try startWithRecords(writingThrough: "eu-1")
        let hosts = ["eu-1", "eu-2"].map { "\(cluster)/hosts/\($0)/data" }
        XCTAssertFalse(files(under: hosts[1], containing: secret).isEmpty, "the replica has the records")

        stop("eu-1")
        let erase = try pdb("erase", hosts[0], "alice", "--json")
        assertExit(erase, 0)
        XCTAssertGreaterThan(try erase.object()["retained_segments_removed"] as? Int ?? 0, 0)
        XCTAssertEqual(files(under: hosts[0], containing: secret), [])
        try start("eu-1")
        try assertConverges("users", primary: "eu-1", replicas: ["eu-2"])
        let deadline = Date().addingTimeInterval(30)
        while !files(under: hosts[1], containing: secret).isEmpty, Date() < deadline { usleep(100_000) }
        for host in hosts { XCTAssertEqual(files(under: host, containing: secret), [], host) }
        let carol = try remote("export", "eu-2", "carol")
        assertExit(carol, 0)
        XCTAssertEqual(try carol.objects().first?["value"] as? String, "Carol C.")
        assertExit(try remote("audit", "eu-1"), 0)
    }

    /// On a running primary, through `pdb://`: the erasure is made while it serves, its replica
    /// is sent a snapshot of the rewritten file, and then no file of either host holds a byte of
    /// the subject's records. A replica refuses it and names the primary.
    func testAnErasureOnARunningPrimaryReachesItsReplica() throws {
        let secret = try startWithRecords(writingThrough: "eu-2")
        let hosts = ["eu-1", "eu-2"].map { "\(cluster)/hosts/\($0)/data" }
        XCTAssertFalse(files(under: hosts[0], containing: secret).isEmpty, "the primary's log or file has them")

        let onReplica = try remote("erase", "eu-2", "alice", "--json")
        assertExit(onReplica, 1)
        XCTAssertEqual(try onReplica.errorCode(), "not_primary")
        let erase = try remote("erase", "eu-1", "alice", "--json")
        assertExit(erase, 0)
        let partitions = try XCTUnwrap(try erase.object()["partitions"] as? [[String: Any]])
        XCTAssertEqual(partitions.map { $0["records"] as? Int }, [1])
        XCTAssertEqual(files(under: hosts[0], containing: secret), [], "nothing left on the primary")
        let deadline = Date().addingTimeInterval(60)
        while !files(under: hosts[1], containing: secret).isEmpty, Date() < deadline { usleep(100_000) }
        try assertConverges("users", primary: "eu-1", replicas: ["eu-2"])
        for host in hosts { XCTAssertEqual(files(under: host, containing: secret), [], host) }
        let carol = try remote("export", "eu-2", "carol")
        XCTAssertEqual(try carol.objects().first?["value"] as? String, "Carol C.")
        // The cluster goes on: a write through the replica after the erasure.
        assertExit(try remote("put", "eu-2", "users", "profile", "carol", "Carol D.", "--owner", "carol"), 0)
        XCTAssertEqual(try remote("get", "eu-2", "users", "profile", "carol").stdout, "Carol D.\n")
        assertExit(try remote("audit", "eu-1"), 0)
    }
}
