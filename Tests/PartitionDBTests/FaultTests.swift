import Foundation
import XCTest

@testable import PartitionDB

/// I/O errors and a full disk (issue 3): faults injected through `FaultInjectingFileSystem` must
/// surface as typed `PartitionDBError.io` errors; after a failed write or fsync on commit the
/// partition refuses writes (`needsReopen`) until it is reopened, while reads of committed data
/// go on; reopening without faults finds a clean partition holding every acknowledged commit;
/// and a full disk leaves the files consistent, with writing resuming once space is freed.
///
/// The loops run a fixed script of every kind of step; PDB_FAULT_SEED runs a random script of
/// the same length from that seed instead (for `make reliability`).
final class FaultTests: XCTestCase {
    /// Faults injected and handled by all tests of the class, for the summary line.
    nonisolated(unsafe) static var classTally = FaultTally()

    override class func tearDown() {
        print("faults injected: \(classTally.injected), handled: \(classTally.handled) (all fault tests)")
        super.tearDown()
    }

    static var options: Options { CrashTests.options }
    static let chosenSeed = ProcessInfo.processInfo.environment["PDB_FAULT_SEED"].flatMap { UInt64($0) }
    static var seed: UInt64 { chosenSeed ?? 20_260_302 }

    /// Every kind of step, with enough commits for automatic checkpoints and log restarts.
    static let fixedScript: [RandomWorkload.Step] = [
        .regionalCommit(changes: 3), .globalCommit(changes: 2), .regionalCommit(changes: 14),
        .checkpoint(global: false), .dropTable, .regionalCommit(changes: 4), .regionalCommit(changes: 5),
        .globalCommit(changes: 1), .reopen, .regionalCommit(changes: 3), .compact, .regionalCommit(changes: 2),
        .checkpoint(global: true), .regionalCommit(changes: 6),
    ]

    static var script: [RandomWorkload.Step] {
        guard let chosenSeed else { return fixedScript }
        var random = SeededGenerator(seed: chosenSeed)
        return fixedScript.map { _ in RandomWorkload.randomStep(&random) }
    }

    // MARK: Fail the Nth operation

    /// SQLite's I/O-error loop: for N = 1, 2, 3, ... the Nth I/O operation of the workload fails
    /// once, until the workload completes without reaching N. After each run the disk is checked
    /// as left and after a power loss, then reopened without faults and written to.
    func testFailingTheNthOperationOnce() throws {
        try failEachOperation(persistently: false)
    }

    /// The same loop with the Nth and every later operation failing, as when a disk dies.
    func testFailingEveryOperationFromTheNth() throws {
        try failEachOperation(persistently: true)
    }

    func failEachOperation(persistently: Bool) throws {
        var tally = FaultTally()
        var outcomes: [String: Int] = [:]
        var n = 1
        while true {
            let run = try runScript(fault: persistently ? .failFrom(n) : .failOnce(at: n))
            if run.faults.injected.isEmpty {
                XCTAssertNil(run.error, "the workload failed without a fault")
                break
            }
            switch run.error as? PartitionDBError {
            case nil:
                outcomes["tolerated " + run.faults.injected[0].kind.rawValue, default: 0] += 1
            case .io?: outcomes["threw io", default: 0] += 1
            case let other?: outcomes["threw \(other.code)", default: 0] += 1
            }
            let problems = problemsAfterFault(run) + resumeWriting(after: run)
            tally.record(run.faults.injected.count, problems: problems) {
                "N = \(n), first fault \(run.faults.injected[0]), error \(run.error.map { "\($0)" } ?? "none")"
            }
            n += 1
        }
        print(
            "fail \(persistently ? "from" : "only") the Nth operation (seed \(FaultTests.seed)): N = 1...\(n - 1), "
                + "all the workload's operations; "
                + outcomes.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))
        tally.report(self)
    }

    /// One run of `script` on a simulated disk, with `fault` injected from the start.
    struct ScriptRun {
        var path: String
        var disk: SimulatedFileSystem
        var faults: FaultInjectingFileSystem
        var workload: RandomWorkload
        /// What the workload threw, if anything.
        var error: Error?
    }

    func runScript(fault: FaultInjectingFileSystem.Fault?, freeSpace: Int? = nil) throws -> ScriptRun {
        let root = try temporaryDirectory(self)
        let path = root + "/db"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let disk = SimulatedFileSystem(roots: [root])
        let faults = FaultInjectingFileSystem(wrapping: disk)
        faults.inject(fault)
        faults.freeSpace = freeSpace
        let workload = RandomWorkload(
            path: path, options: FaultTests.options, seed: FaultTests.seed, script: FaultTests.script,
            clock: { faults.operationCount })
        var error: Error? = nil
        do { try workload.run(on: faults) } catch let caught { error = caught }
        // Closing goes through the faults too, as a real program's would.
        workload.abandon()
        faults.inject(nil)
        return ScriptRun(path: path, disk: disk, faults: faults, workload: workload, error: error)
    }

    /// What is wrong after a faulty run: an error that is not the typed one injected, or a disk
    /// that, reopened without faults, fails to open or check, or lacks an acknowledged commit.
    /// Both the disk as the process left it and the disk after a power loss that drops every
    /// unsynced write are reopened.
    func problemsAfterFault(_ run: ScriptRun) -> [String] {
        var problems: [String] = []
        if let error = run.error {
            switch error as? PartitionDBError {
            case .io(let errno, _, _):
                if !run.faults.injected.contains(where: { $0.errno == errno }) {
                    problems.append("threw errno \(errno), which was not injected")
                }
            case .needsReopen:
                break  // An automatic checkpoint failed after an acknowledged commit; the next write refuses.
            default:
                problems.append("threw \(error), not the injected I/O error")
            }
        }
        let verifier = CrashVerifier(
            path: run.path, databaseCreationReturned: run.workload.databaseCreationReturned,
            histories: run.workload.histories)
        for (view, image) in [("as left", run.disk.currentImage), ("after power loss", run.disk.durableImage)] {
            let disk = SimulatedFileSystem(image: image, recording: false)
            problems += verifier.problems(on: disk, at: Int.max).map { "\(view): \($0)" }
        }
        return problems
    }

    // MARK: Each kind of fault

    /// A read error, in a read transaction or in a write transaction's body, is a typed error;
    /// nothing is poisoned: once the disk reads again, reads and writes go on.
    func testReadErrorIsTypedAndPoisonsNothing() throws {
        var tally = FaultTally()
        let path = try temporaryDirectory(self)
        let expected = try makeDatabase(at: path, records: 300)
        let faults = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        let db = try Database.open(at: path, region: eu, options: FaultTests.options, fileSystem: faults)
        defer { try? db.close() }
        db.setResolver(RandomWorkload.resolver())
        let partition = try db.partition("p")

        faults.inject(.fail(kinds: [.read], suffix: "/p.pdb", errno: EIO, persistent: true, shortWrite: false))
        var problems = expectIOError(EIO, operation: "pread", suffix: "/p.pdb") { _ = try partition.content() }
        problems += expectIOError(EIO, operation: "pread", suffix: "/p.pdb") {
            try partition.write { tx in try tx.put("t0", bytes("new"), bytes("value"), owner: try SubjectID("s0")) }
        }
        faults.inject(nil)
        if try partition.content() != expected { problems.append("content changed after read errors") }
        try partition.write { tx in try tx.put("t0", bytes("new"), bytes("value"), owner: try SubjectID("s0")) }
        if try !partition.check().isClean { problems.append("check() after read errors") }
        tally.record(faults.injected.count, problems: problems) { "read errors" }
        tally.report(self)
    }

    /// A failed log write on commit throws `.io`; the partition then refuses writes, checkpoints
    /// and compaction (`needsReopen`), even though the disk works again, while reads go on; after
    /// `close()`, `Database.partition` gives a fresh handle that recovers and writes. On the real
    /// file system.
    func testWriteErrorOnCommitRefusesWritesUntilReopened() throws {
        try failCommit(
            .fail(kinds: [.write], suffix: "p.pdb-log", errno: EIO, persistent: false, shortWrite: false),
            errno: EIO, operation: "pwrite", realDisk: true)
    }

    /// A short log write (half the bytes, then an error) is handled like a failed one; the
    /// database is closed and reopened.
    func testShortWriteOnCommitRefusesWritesUntilReopened() throws {
        try failCommit(
            .fail(kinds: [.write], suffix: "p.pdb-log", errno: EIO, persistent: false, shortWrite: true),
            errno: EIO, operation: "pwrite", realDisk: false)
    }

    /// A failed fsync of the log on commit throws `.io`, and is never retried as if it had worked:
    /// no later sync touches the log before the partition is reopened, and after a power loss
    /// that drops what the failed fsync should have saved, every acknowledged commit is there.
    func testFailedFsyncOnCommitIsNeverRetried() throws {
        try failCommit(
            .fail(kinds: [.sync], suffix: "p.pdb-log", errno: EIO, persistent: false, shortWrite: false),
            errno: EIO, operation: "fsync", realDisk: false)
    }

    /// Makes one commit fail with `fault` and checks everything that follows.
    func failCommit(
        _ fault: FaultInjectingFileSystem.Fault, errno: Int32, operation: String, realDisk: Bool,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        var tally = FaultTally()
        let root = try temporaryDirectory(self)
        let path = root + "/db"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let disk = SimulatedFileSystem(roots: [root])
        let faults = FaultInjectingFileSystem(wrapping: realDisk ? PosixFileSystem() : disk)
        var db = try Database.create(at: path, region: eu, options: FaultTests.options, fileSystem: faults)
        db.setResolver(RandomWorkload.resolver())
        var partition = try db.createPartition("p")
        let owner = try SubjectID("s0")
        let large = [UInt8](repeating: 7, count: 9_000)
        try partition.write { tx in
            try tx.put("t0", bytes("acknowledged"), large, owner: owner)
            try tx.put("t0", bytes("small"), bytes("1"), owner: owner)
        }
        let acknowledged = try partition.content()
        let log = disk.currentImage.file(at: path + "/p.pdb-log")
        let logSyncs = {
            disk.operations.filter { if case .sync(let file) = $0 { return file == log } else { return false } }.count
        }
        let syncsBefore = logSyncs()

        faults.inject(fault)
        var problems = expectIOError(errno, operation: operation, suffix: "p.pdb-log") {
            try partition.write { tx in try tx.put("t0", bytes("unsure"), large, owner: owner) }
        }
        faults.inject(nil)
        // The disk works again, but the handle cannot know what reached it: it refuses to write.
        let refused = PartitionDBError.needsReopen(partition: "p")
        problems += expectError(refused, "write") {
            try partition.write { tx in try tx.put("t0", bytes("refused"), bytes("x"), owner: owner) }
        }
        problems += expectError(refused, "checkpoint") { try partition.checkpoint() }
        problems += expectError(refused, "compact") { _ = try partition.compact() }
        if try partition.content() != acknowledged { problems.append("reads after the failure differ") }

        if realDisk {
            // Closing reports the error that stopped writes. A fresh handle of the open database
            // runs recovery; the failed commit may or may not be there, every acknowledged one is.
            problems += expectIOError(errno, operation: operation, suffix: "p.pdb-log") { try partition.close() }
            partition = try db.partition("p")
        } else {
            problems += expectIOError(errno, operation: operation, suffix: "p.pdb-log") { try db.close() }
            if logSyncs() != syncsBefore { problems.append("a sync of the log ran after the failed commit") }
            // Power loss: only what was synced survives. The failed commit cannot have been synced.
            let crashed = SimulatedFileSystem(image: disk.durableImage, recording: false)
            let reopened = try Database.open(at: path, region: eu, options: FaultTests.options, fileSystem: crashed)
            let recovered = try reopened.partition("p")
            if try !recovered.check().isClean { problems.append("check() after power loss") }
            if try recovered.content() != acknowledged { problems.append("power loss: not the acknowledged content") }
            try reopened.close()
            // Without a power loss, reopening the database recovers from the disk as it is.
            db = try Database.open(at: path, region: eu, options: FaultTests.options, fileSystem: faults)
            db.setResolver(RandomWorkload.resolver())
            partition = try db.partition("p")
        }
        if try !partition.check().isClean { problems.append("check() after reopening") }
        var content = try partition.content()
        content["t0"]?[bytes("unsure")] = nil
        if content != acknowledged { problems.append("reopened: acknowledged content missing") }
        try partition.write { tx in try tx.put("t0", bytes("after"), bytes("reopen"), owner: owner) }
        if try partition.read({ try $0.get("t0", bytes("after")) }) != bytes("reopen") {
            problems.append("the write after reopening is missing")
        }
        if try !partition.check().isClean { problems.append("check() after writing again") }
        try db.close()
        tally.record(faults.injected.count, problems: problems) { "\(operation) failure on commit" }
        tally.report(self, file: file, line: line)
    }

    // MARK: A full disk

    /// The disk fills during a commit: the log write fails with ENOSPC; the partition refuses
    /// writes, keeps reading, and its files stay consistent; once space is freed and the
    /// partition reopened, writing resumes. On the real file system. (A checkpoint that finds the
    /// disk full is covered by the next test.)
    func testFullDiskLeavesFilesConsistentAndWritingResumes() throws {
        var tally = FaultTally()
        let path = try temporaryDirectory(self)
        _ = try makeDatabase(at: path, records: 50)
        let faults = FaultInjectingFileSystem(wrapping: PosixFileSystem())
        // No automatic checkpoint: the log grows until a commit's log write finds the disk full.
        var options = FaultTests.options
        options.autoCheckpointFrames = 100_000
        var db = try Database.open(at: path, region: eu, options: options, fileSystem: faults)
        db.setResolver(RandomWorkload.resolver())
        var partition = try db.partition("p")
        let owner = try SubjectID("s1")
        faults.freeSpace = 100_000
        var acknowledged = try partition.content()
        var failure: Error? = nil
        for i in 0..<100 {
            let value = [UInt8](repeating: UInt8(i), count: 6_000)
            do {
                try partition.write { tx in try tx.put("t1", bytes("fill-\(i)"), value, owner: owner) }
                acknowledged["t1", default: [:]][bytes("fill-\(i)")] = StoredRecord(value: value, owner: "s1")
            } catch {
                failure = error
                break
            }
        }
        var problems: [String] = []
        switch failure as? PartitionDBError {
        case .io(ENOSPC, "pwrite", let file) where file.hasSuffix("/p.pdb-log"): break
        default: problems.append("filling the disk threw \(failure.map { "\($0)" } ?? "nothing"), not ENOSPC")
        }
        if !faults.injected.contains(where: { $0.errno == ENOSPC }) { problems.append("the disk never filled") }
        if try partition.content() != acknowledged { problems.append("reads on the full disk differ") }
        problems += expectError(.needsReopen(partition: "p"), "write on a full disk") {
            try partition.write { tx in try tx.put("t1", bytes("refused"), bytes("x"), owner: owner) }
        }
        // Closing reports the ENOSPC that stopped writes.
        problems += expectIOError(ENOSPC, operation: "pwrite", suffix: "/p.pdb-log") { try db.close() }

        // While the disk is still full, the files as they are open cleanly without faults.
        let plain = try Database.open(at: path, region: eu, options: FaultTests.options)
        let consistent = try plain.partition("p")
        if try !consistent.check().isClean { problems.append("check() of the files left by the full disk") }
        if try consistent.content() != acknowledged { problems.append("the full disk lost acknowledged content") }
        try plain.close()

        // Space is freed: the partition reopens and writing resumes.
        faults.freeSpace = nil
        db = try Database.open(at: path, region: eu, options: options, fileSystem: faults)
        db.setResolver(RandomWorkload.resolver())
        partition = try db.partition("p")
        try partition.write { tx in try tx.put("t1", bytes("resumed"), bytes("yes"), owner: owner) }
        acknowledged["t1", default: [:]][bytes("resumed")] = StoredRecord(value: bytes("yes"), owner: "s1")
        if try partition.content() != acknowledged { problems.append("content after writing resumed") }
        if try !partition.check().isClean { problems.append("check() after writing resumed") }
        try db.close()
        tally.record(faults.injected.count, problems: problems) { "full disk" }
        tally.report(self)
    }

    /// The disk is full from the start, with 0 bytes free, then a little more each time up to
    /// what the workload needs: each time, the files are consistent with every acknowledged
    /// commit (as left and after a power loss), and once space is freed the database reopens and
    /// takes a commit.
    func testFullDiskAtEveryPointStaysConsistentAndWritingResumes() throws {
        // A run without limit measures the space the workload needs at its peak; about 40
        // budgets cover it.
        let measured = try runScript(fault: nil)
        XCTAssertNil(measured.error)
        let needed = measured.faults.peakUsage
        let step = max(12 * 1024, needed / 40 / 4096 * 4096)
        var tally = FaultTally()
        var budget = 0
        while budget < needed {
            let run = try runScript(fault: nil, freeSpace: budget)
            var problems = problemsAfterFault(run)
            problems += resumeWriting(after: run)
            if run.faults.injected.isEmpty {
                problems.append("the disk did not fill with \(budget) of \(needed) bytes")
            }
            tally.record(run.faults.injected.count, problems: problems) { "\(budget) bytes free" }
            budget += step
        }
        print("full disk with 0...\(budget - step) bytes free in steps of \(step) (the workload needs \(needed))")
        tally.report(self)
    }

    /// Reopens a run's database without faults and with space to spare, and commits to every
    /// partition it has.
    func resumeWriting(after run: ScriptRun) -> [String] {
        run.faults.freeSpace = nil
        do {
            let db: Database
            do {
                db = try Database.open(at: run.path, region: eu, options: FaultTests.options, fileSystem: run.faults)
            } catch PartitionDBError.noSuchDatabase {
                return []
            }
            defer { try? db.close() }
            db.setResolver(RandomWorkload.resolver())
            for name in try db.partitionNames() {
                let partition = try db.partition(name)
                let owner = partition.region.isGlobal ? nil : try SubjectID("s2")
                try partition.write { tx in try tx.put("resumed", bytes("key"), bytes("value"), owner: owner) }
                if try !partition.check().isClean { return ["\(name): check() after writing resumed"] }
            }
            return []
        } catch {
            return ["writing did not resume after space was freed: \(error)"]
        }
    }

    // MARK: Helpers

    /// Creates a database with partition `p` holding `records` records (some with overflow
    /// values) on the real file system, closes it, and returns its content.
    func makeDatabase(at path: String, records: Int) throws -> PartitionContent {
        let db = try Database.create(at: path, region: eu, options: FaultTests.options)
        db.setResolver(RandomWorkload.resolver())
        let partition = try db.createPartition("p")
        try partition.write { tx in
            for i in 0..<records {
                let value = [UInt8](repeating: UInt8(i & 0xFF), count: i % 10 == 0 ? 5_000 : 100)
                try tx.put("t\(i % 3)", bytes("key-\(i)"), value, owner: try SubjectID("s\(i % 3)"))
            }
        }
        let content = try partition.content()
        try db.close()
        return content
    }

    /// Runs `body`, which must throw `.io` with `errno`, `operation`, and a path ending with `suffix`.
    func expectIOError(_ errno: Int32, operation: String, suffix: String, _ body: () throws -> Void) -> [String] {
        do {
            try body()
            return ["no error surfaced for an injected \(operation) failure"]
        } catch PartitionDBError.io(let got, let op, let path) where got == errno && op == operation {
            return path.hasSuffix(suffix) ? [] : ["the \(operation) error names \(path)"]
        } catch {
            return ["an injected \(operation) failure surfaced as \(error)"]
        }
    }

    /// Runs `body`, which must throw `expected`.
    func expectError(_ expected: PartitionDBError, _ what: String, _ body: () throws -> Void) -> [String] {
        do {
            try body()
            return ["\(what) was allowed; expected \(expected)"]
        } catch let error as PartitionDBError where error == expected {
            return []
        } catch {
            return ["\(what) threw \(error); expected \(expected)"]
        }
    }
}

/// Counts injected faults, and those handled: the error was typed and the disk recovered.
struct FaultTally {
    private(set) var injected = 0
    private(set) var handled = 0
    private(set) var failures: [String] = []
    private(set) var failedRuns = 0

    /// Counts a run that injected `faults` faults and found `problems`.
    mutating func record(_ faults: Int, problems: [String], describe: () -> String) {
        injected += faults
        FaultTests.classTally.injected += faults
        if problems.isEmpty {
            handled += faults
            FaultTests.classTally.handled += faults
            return
        }
        failedRuns += 1
        if failures.count < 12 { failures.append("\(describe()): \(problems.joined(separator: " | "))") }
    }

    func report(_ test: XCTestCase, file: StaticString = #filePath, line: UInt = #line) {
        print("faults injected: \(injected), handled: \(handled)")
        for failure in failures { print("  FAILED \(failure)") }
        XCTAssertEqual(
            failedRuns, 0, "\(failedRuns) runs failed; first: \(failures.first ?? "")", file: file, line: line)
        XCTAssertGreaterThan(injected, 0, "no fault was injected", file: file, line: line)
    }
}
