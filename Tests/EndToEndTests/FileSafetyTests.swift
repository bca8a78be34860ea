import Foundation
import XCTest

/// Issue 11's "files are what their contents say": every way a careless or hostile command line
/// found to destroy a partition through a file name, each through the real `pdb` binary.
final class FileSafetyTests: PDBTestCase {
    var orders: String { db + "/orders.pdb" }
    var fileManager: FileManager { FileManager.default }

    override func setUpWithError() throws {
        try super.setUpWithError()
        try makeDatabase()
        assertExit(try pdb("create-partition", db, "orders"), 0)
        assertExit(try pdb("put", db, "orders", "t", "o1", "first order", "--owner", "alice"), 0)
        assertExit(try pdb("put", db, "users", "t", "u1", "a user", "--owner", "alice"), 0)
    }

    /// The bytes of every file of the database, by name: what "nothing was destroyed" compares.
    /// The database's files, without its lock and the log of backups taken (which a backup
    /// appends to: spec/cli.md#pdb-backup).
    func snapshot() throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in try fileManager.contentsOfDirectory(atPath: db) where name != "LOCK" && name != "backups.log" {
            files[name] = try Data(contentsOf: URL(fileURLWithPath: db + "/" + name))
        }
        return files
    }

    func assertOrdersIntact(file: StaticString = #filePath, line: UInt = #line) throws {
        let read = try pdb("get", db, "orders", "t", "o1")
        XCTAssertEqual(read.stdout, "first order\n", read.stderr, file: file, line: line)
        assertExit(try pdb("check", db), 0, file: file, line: line)
    }

    // MARK: Backups never replace a file of the database

    /// Found: `pdb backup DIR users DIR/orders.pdb` returned 0 and destroyed `orders`.
    func testBackupOverAFileOfTheDatabaseIsRefused() throws {
        let before = try snapshot()
        for name in ["orders.pdb", "orders.pdb-log", "global.pdb", "PARTITIONDB", "LOCK", "new.pdb", "x.pdb-log"] {
            for force in [false, true] {
                var arguments = ["backup", db, "users", db + "/" + name, "--json"]
                if force { arguments.append("--force") }
                let result = try run(arguments)
                assertExit(result, 1)
                XCTAssertEqual(try result.errorCode(), "unsafe_file", "\(name) force=\(force)")
            }
        }
        XCTAssertEqual(try snapshot(), before)
        try assertOrdersIntact()
        // The same name reached another way is the same file.
        let sneaky = try pdb("backup", db, "users", root.path + "/./db/../db/orders.pdb", "--force", "--json")
        XCTAssertEqual(try sneaky.errorCode(), "unsafe_file")
        XCTAssertEqual(try snapshot(), before)
        // A new name in the database directory that is no database name is fine.
        assertExit(try pdb("backup", db, "users", db + "/users.backup"), 0)
    }

    func testAnExistingTargetIsReplacedOnlyWithForceAndOnlyWhenRegular() throws {
        let target = root.path + "/users.backup"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: target))
        let refused = try pdb("backup", db, "users", target, "--json")
        assertExit(refused, 1)
        XCTAssertEqual(try refused.errorCode(), "target_exists")
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), "keep me")
        assertExit(try pdb("backup", db, "users", target, "--force"), 0)
        XCTAssertNotEqual(try String(contentsOfFile: target, encoding: .isoLatin1), "keep me")

        // A symlink is refused even with --force, and what it points to is untouched.
        let victim = root.path + "/victim"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: victim))
        let link = root.path + "/link.backup"
        try fileManager.createSymbolicLink(atPath: link, withDestinationPath: victim)
        for force in [false, true] {
            let result = try run(["backup", db, "users", link, "--json"] + (force ? ["--force"] : []))
            XCTAssertEqual(try result.errorCode(), "unsafe_file")
        }
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "precious")
        XCTAssertEqual(try fileManager.destinationOfSymbolicLink(atPath: link), victim)

        // A FIFO (a special file, like a device node) is never replaced by a regular file.
        let fifo = root.path + "/fifo"
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let special = try pdb("backup", db, "users", fifo, "--force", "--json")
        XCTAssertEqual(try special.errorCode(), "unsafe_file")
        var info = stat()
        XCTAssertEqual(lstat(fifo, &info), 0)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFIFO)
        // So is a directory.
        let directory = try pdb("backup", db, "users", root.path, "--force", "--json")
        XCTAssertEqual(try directory.errorCode(), "unsafe_file")
    }

    /// The temporary name a backup writes first is never written through: a symlink planted
    /// there is unlinked, not followed.
    func testTheTemporaryFileOfABackupIsNeverWrittenThrough() throws {
        let before = try snapshot()
        let target = root.path + "/users.backup"
        try fileManager.createSymbolicLink(atPath: target + ".creating", withDestinationPath: orders)
        assertExit(try pdb("backup", db, "users", target), 0)
        XCTAssertFalse(fileManager.fileExists(atPath: target + ".creating"))
        XCTAssertEqual(try snapshot(), before)
        try assertOrdersIntact()
        // Compaction's temporary names too.
        try fileManager.createSymbolicLink(atPath: db + "/users.pdb.compacting.creating", withDestinationPath: orders)
        assertExit(try pdb("compact", db, "users"), 0)
        try assertOrdersIntact()
    }

    // MARK: A partition is opened only as itself

    /// Found: a copy of `orders.pdb` saved as `copyx.pdb` opened as `copyx`, with `orders`' file id.
    func testACopyUnderAnotherNameIsRefused() throws {
        try fileManager.copyItem(atPath: orders, toPath: db + "/copyx.pdb")
        let read = try pdb("get", db, "copyx", "t", "o1", "--json")
        assertExit(read, 1)
        XCTAssertEqual(try read.errorCode(), "name_mismatch")
        let write = try pdb("put", db, "copyx", "t", "o2", "v", "--owner", "alice", "--json")
        XCTAssertEqual(try write.errorCode(), "name_mismatch")
        // check reports it and still checks everything else.
        let check = try pdb("check", db, "--json")
        assertExit(check, 1)
        let partitions = try XCTUnwrap(try check.object()["partitions"] as? [[String: Any]])
        let byName = Dictionary(uniqueKeysWithValues: partitions.map { ($0["name"] as! String, $0["clean"] as! Bool) })
        XCTAssertEqual(byName, ["copyx": false, "global": true, "orders": true, "users": true])
        // Restored under a new name, a backup is a partition of its own, with a new file id.
        let backup = root.path + "/orders.backup"
        assertExit(try pdb("backup", db, "orders", backup), 0)
        try fileManager.removeItem(atPath: db + "/copyx.pdb")
        assertExit(try pdb("restore", db, backup, "--as", "copyx"), 0)
        let info = try pdb("info", db, "--json")
        let ids = try XCTUnwrap(try info.object()["partitions"] as? [[String: Any]]).map { $0["file_id"] as! String }
        XCTAssertEqual(Set(ids).count, ids.count, "file ids: \(ids)")
        assertExit(try pdb("check", db), 0)
    }

    /// Found: a symlink `alias.pdb -> orders.pdb` gave `alias` its own log, whose stale frames
    /// were later replayed into `orders`.
    func testSymlinksAndHardLinksToPartitionFilesAreRefused() throws {
        try fileManager.createSymbolicLink(atPath: db + "/alias.pdb", withDestinationPath: orders)
        let alias = try pdb("put", db, "alias", "t", "o1", "evil", "--owner", "alice", "--json")
        assertExit(alias, 1)
        XCTAssertEqual(try alias.errorCode(), "unsafe_file")
        XCTAssertFalse(fileManager.fileExists(atPath: db + "/alias.pdb-log"))
        try fileManager.removeItem(atPath: db + "/alias.pdb")

        XCTAssertEqual(link(orders, db + "/hard.pdb"), 0)
        for partition in ["hard", "orders"] {
            let result = try pdb("get", db, partition, "t", "o1", "--json")
            XCTAssertEqual(try result.errorCode(), "unsafe_file", partition)
        }
        try fileManager.removeItem(atPath: db + "/hard.pdb")

        // A log that is a symlink to another partition's log.
        assertExit(try pdb("create-partition", db, "other"), 0)
        try? fileManager.removeItem(atPath: db + "/other.pdb-log")
        try fileManager.createSymbolicLink(atPath: db + "/other.pdb-log", withDestinationPath: db + "/orders.pdb-log")
        let log = try pdb("put", db, "other", "t", "k", "v", "--owner", "alice", "--json")
        XCTAssertEqual(try log.errorCode(), "unsafe_file")
        try fileManager.removeItem(atPath: db + "/other.pdb-log")
        try assertOrdersIntact()
    }

    // MARK: pdb init never replaces a database

    /// Found: after `PARTITIONDB` was deleted, following the error's advice to run `pdb init`
    /// replaced `global.pdb` with an empty one and lost every home.
    func testInitRefusesADatabaseThatLostItsIdentityFile() throws {
        try fileManager.removeItem(atPath: db + "/PARTITIONDB")
        let before = try snapshot()
        let get = try pdb("get", db, "orders", "t", "o1", "--json")
        assertExit(get, 1)
        XCTAssertEqual(try get.errorCode(), "identity_missing")
        let message = try XCTUnwrap((try get.object()["error"] as? [String: Any])?["message"] as? String)
        XCTAssertTrue(message.contains("do not run `pdb init`"), message)
        let initialize = try pdb("init", db, "--region", "eu", "--json")
        assertExit(initialize, 1)
        XCTAssertEqual(try initialize.errorCode(), "identity_missing")
        XCTAssertEqual(try snapshot(), before)
        // Logs alone count too.
        let other = root.path + "/other"
        try fileManager.createDirectory(atPath: other, withIntermediateDirectories: false)
        try Data().write(to: URL(fileURLWithPath: other + "/users.pdb-log"))
        XCTAssertEqual(try pdb("init", other, "--region", "eu", "--json").errorCode(), "identity_missing")
        // Following the message's advice brings every home back.
        try Data("partitiondb 1\nregion eu\n".utf8).write(to: URL(fileURLWithPath: db + "/PARTITIONDB"))
        XCTAssertEqual(try pdb("home", "get", db, "bob").stdout, "us\n")
        try assertOrdersIntact()
    }

    // MARK: check and info report what is missing or stray

    func testAMissingGlobalPartitionIsDamage() throws {
        try fileManager.removeItem(atPath: db + "/global.pdb")
        try? fileManager.removeItem(atPath: db + "/global.pdb-log")
        let check = try pdb("check", db, "--json")
        assertExit(check, 1)
        let report = try check.object()
        XCTAssertEqual(report["clean"] as? Bool, false)
        let partitions = try XCTUnwrap(report["partitions"] as? [[String: Any]])
        XCTAssertEqual(partitions.first?["name"] as? String, "global")
        XCTAssertEqual(partitions.first?["clean"] as? Bool, false)
        let human = try pdb("check", db)
        assertExit(human, 1)
        XCTAssertTrue(human.stdout.contains("global: DAMAGED"), human.stdout)
        let info = try pdb("info", db, "--json")
        assertExit(info, 0)
        let problems = try XCTUnwrap(try info.object()["problems"] as? [[String: Any]])
        XCTAssertEqual(problems.first?["code"] as? String, "no_such_partition")
    }

    /// A stray, empty or dangling `*.pdb` is reported by check and info instead of making them
    /// fail as a whole.
    func testStrayEmptyAndDanglingFilesAreReportedNotFatal() throws {
        try Data().write(to: URL(fileURLWithPath: db + "/empty.pdb"))
        try fileManager.createSymbolicLink(atPath: db + "/gone.pdb", withDestinationPath: db + "/nowhere.pdb")
        try Data("x".utf8).write(to: URL(fileURLWithPath: db + "/bad name.pdb"))
        try Data().write(to: URL(fileURLWithPath: db + "/orphan.pdb-log"))
        let check = try pdb("check", db, "--json")
        assertExit(check, 1)
        let partitions = try XCTUnwrap(try check.object()["partitions"] as? [[String: Any]])
        var verdicts: [String: Bool] = [:]
        for partition in partitions { verdicts[partition["name"] as! String] = partition["clean"] as? Bool }
        XCTAssertEqual(
            verdicts,
            [
                "global": true, "users": true, "orders": true, "empty": false, "gone": false, "bad name.pdb": false,
                "orphan.pdb-log": false,
            ])
        let info = try pdb("info", db, "--json")
        assertExit(info, 0)
        let object = try info.object()
        let shown = try XCTUnwrap(object["partitions"] as? [[String: Any]]).map { $0["name"] as! String }
        XCTAssertEqual(shown, ["global", "orders", "users"])
        let problems = try XCTUnwrap(object["problems"] as? [[String: Any]]).map { $0["file"] as! String }
        XCTAssertEqual(problems.count, 4, "\(problems)")
        let human = try pdb("info", db)
        assertExit(human, 0)
        XCTAssertTrue(human.stdout.contains("problem: "), human.stdout)
    }

    // MARK: Temporary files never pile up

    func testLeftoversOfCrashedOperationsAreCleanedOnTheNextOpen() throws {
        let leftovers = [
            "users.pdb.creating", "users.pdb.compacting", "users.pdb.compacting-log", "users.pdb.compacting.creating",
            "PARTITIONDB.creating",
        ]
        for name in leftovers { try Data("half".utf8).write(to: URL(fileURLWithPath: db + "/" + name)) }
        assertExit(try pdb("put", db, "users", "t", "u2", "v", "--owner", "alice"), 0)
        for name in leftovers { XCTAssertFalse(fileManager.fileExists(atPath: db + "/" + name), name) }
        try assertOrdersIntact()
    }

    func testAFailedRestoreLeavesNothingBehind() throws {
        let backup = root.path + "/orders.backup"
        assertExit(try pdb("backup", db, "orders", backup), 0)
        // Cut the backup short: its header is fine, its pages are not all there.
        let data = try Data(contentsOf: URL(fileURLWithPath: backup))
        try data.prefix(data.count - 40).write(to: URL(fileURLWithPath: backup))
        let result = try pdb("restore", db, backup, "--as", "copy", "--json")
        assertExit(result, 1)
        XCTAssertEqual(try result.errorCode(), "bad_backup")
        let names = try fileManager.contentsOfDirectory(atPath: db)
        XCTAssertFalse(names.contains { $0.hasPrefix("copy") }, "\(names)")
    }

    // MARK: The directory is written only through its API

    /// Found: `pdb put DIR global homes alice us` moved alice's home and left her eu records
    /// behind, and `check` stayed clean.
    func testTheDirectoryCannotBeWrittenByPlainCommands() throws {
        let before = try snapshot()
        let put = try pdb("put", db, "global", "homes", "alice", "us", "--json")
        assertExit(put, 1)
        XCTAssertEqual(try put.errorCode(), "reserved_table")
        let del = try pdb("del", db, "global", "homes", "alice", "--json")
        XCTAssertEqual(try del.errorCode(), "reserved_table")
        let apply = try pdb(
            "apply", db, "global",
            stdin: #"{"op":"put","table":"homes","key":"alice","value":"us"}"# + "\n"
                + #"{"op":"commit"}"#)
        assertExit(apply, 1)
        XCTAssertTrue(apply.stdout.contains("reserved_table"), apply.stdout)
        let reserved = try pdb("put", db, "global", "pdb.users", "k", "v", "--json")
        XCTAssertEqual(try reserved.errorCode(), "reserved_table")
        XCTAssertEqual(try snapshot().filter { !$0.key.hasSuffix("-log") }, before.filter { !$0.key.hasSuffix("-log") })
        XCTAssertEqual(try pdb("home", "get", db, "alice").stdout, "eu\n")
        // Reading it stays possible, and other tables of global are plain tables.
        XCTAssertEqual(try pdb("get", db, "global", "homes", "alice").stdout, "eu\n")
        assertExit(try pdb("put", db, "global", "settings", "k", "v"), 0)
        assertExit(try pdb("home", "set", db, "carol", "us"), 0)
        assertExit(try pdb("check", db), 0)
    }
}
