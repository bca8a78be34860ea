import Foundation
import XCTest

@testable import PartitionDB

/// Simulated power loss (issue 3, guarantee 4 of the design brief): random durable workloads run
/// on a `SimulatedFileSystem`; then, for each chosen crash point of the recorded trace and
/// several choices of which unsynced writes survive (lost, kept, torn), the database is opened on
/// the crashed disk and must open, pass `check()`, and hold exactly the content of one commit,
/// no older than the newest commit whose `write` had returned.
///
/// PDB_CRASH_SEED picks another seed; PDB_CRASH_STATES sets how many crash states the main test
/// explores (at least 10,000 by default, which `make reliability` raises).
final class CrashTests: XCTestCase {
    static let defaultSeed: UInt64 = 20_260_301
    static let defaultStates = 10_500

    static var seed: UInt64 {
        ProcessInfo.processInfo.environment["PDB_CRASH_SEED"].flatMap { UInt64($0) } ?? defaultSeed
    }
    static var stateBudget: Int {
        ProcessInfo.processInfo.environment["PDB_CRASH_STATES"].flatMap { Int($0) } ?? defaultStates
    }

    /// Small checkpoint threshold and cache, so short workloads checkpoint, restart the log and
    /// read pages back from the files; and commits that add two pages or more write them straight
    /// into the partition file (`Options.directWritePages`), as do commits that change two
    /// existing pages or more, after moving them to new pages (`relocationPages`): so every
    /// commit path crashes.
    static var options: Options {
        var options = Options()
        options.autoCheckpointFrames = 12
        options.cachePages = 64
        options.directWritePages = 2
        options.relocationPages = 2
        return options
    }

    /// Every crash point of short workloads, then sampled crash points of one long workload, each
    /// with the unsynced changes lost, kept, and twice at random.
    func testPowerLossAnywhereRecoversAnAcknowledgedCommitBoundary() throws {
        let seed = CrashTests.seed
        let budget = CrashTests.stateBudget
        print("crash test: seed \(seed), \(budget) crash states (PDB_CRASH_SEED / PDB_CRASH_STATES to change)")
        var tally = CrashTally()
        // Three quarters of the budget: short workloads, every crash point.
        var workloadSeed = seed
        var done: [String: Int] = [:]
        var shortWorkloads = 0
        while tally.explored < budget * 3 / 4 {
            let run = try runWorkload(seed: workloadSeed, steps: 40)
            done.merge(run.counts, uniquingKeysWith: +)
            let points = Array(0...run.fileSystem.operationCount)
            explore(run, points: points, seed: workloadSeed, into: &tally)
            workloadSeed &+= 1
            shortWorkloads += 1
        }
        // The rest: one long workload (many checkpoints, restarts and compactions), sampled.
        let long = try runWorkload(seed: seed ^ 0x5EED, steps: 400)
        done.merge(long.counts, uniquingKeysWith: +)
        var random = SeededGenerator(seed: seed)
        let remaining = max(1, (budget - tally.explored) / 3)
        let points = (0..<remaining).map { _ in Int.random(in: 0...long.fileSystem.operationCount, using: &random) }
        explore(long, points: points.sorted(), seed: seed ^ 0x10_4E, into: &tally)
        print(
            "workloads: \(shortWorkloads) of 40 steps (every crash point), 1 of 400 steps (\(remaining) crash points); "
                + done.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        tally.report(self, label: "crash states")
    }

    /// Power loss at every point of `Database.create` and `createPartition`: the database or
    /// partition either does not exist (and can be created again) or opens cleanly and empty.
    func testPowerLossWhileCreatingTheDatabaseAndAPartition() throws {
        let run = try runWorkload(seed: CrashTests.seed, steps: 0)
        var tally = CrashTally()
        var replay = PowerLossReplay(of: run.fileSystem)
        var recreated = 0
        let verifier = CrashVerifier(run: run)
        for point in 0...run.fileSystem.operationCount {
            replay.advance(to: point)
            for (index, choice) in choices(for: replay, point: point, seed: CrashTests.seed, random: 8).enumerated() {
                let crashed = replay.crash(choosing: choice)
                var problems = verifier.problems(on: crashed, at: point)
                // What a crash left unfinished can be done again from the start.
                if problems.isEmpty, index == 0 {
                    problems += recreate(on: crashed, path: run.path)
                    recreated += 1
                }
                tally.record(problems, state: "point \(point) (\(replay.describe(point - 1))), \(choice)")
            }
        }
        print("creation crash points: \(run.fileSystem.operationCount + 1), created again after \(recreated)")
        tally.recoveries = verifier.recoveries
        tally.report(self, label: "creation crash states")
    }

    /// A second power loss during recovery, the first commit after it (a new log header and
    /// salt over the old log) and the close: sampled crashed disks are recovered, written to,
    /// closed, and that trace is crashed again at every point.
    func testPowerLossDuringRecoveryAndTheCommitAfterIt() throws {
        let seed = CrashTests.seed ^ 0xD0_B1E
        let run = try runWorkload(seed: seed, steps: 60)
        var random = SeededGenerator(seed: seed)
        var replay = PowerLossReplay(of: run.fileSystem)
        var tally = CrashTally()
        let firstCrashes = (0..<40).map { _ in Int.random(in: 1...run.fileSystem.operationCount, using: &random) }
        for point in firstCrashes.sorted() {
            replay.advance(to: point)
            let choice: PowerLossChoice =
                replay.hasUnsyncedChanges ? .random(seed: random.next()) : .loseEverything
            let crashed = replay.crash(choosing: choice)
            let state = "first crash at \(point) (\(replay.describe(point - 1))), \(choice)"
            guard
                let second = try recoverAndCommit(on: crashed, run: run, firstCrash: point, tally: &tally, state: state)
            else { continue }
            explore(
                second, points: Array(0...second.fileSystem.operationCount), seed: random.next(), random: 1,
                into: &tally)
        }
        tally.report(self, label: "crash states after recovery")
    }

    /// The harness must be able to fail: on a disk whose fsync makes nothing durable, power
    /// losses must be found to lose acknowledged commits.
    func testHarnessCatchesADiskThatIgnoresFsync() throws {
        let run = try runWorkload(seed: CrashTests.seed, steps: 20, ignoringFileSyncs: true)
        var tally = CrashTally()
        explore(
            run, points: Array(stride(from: 0, through: run.fileSystem.operationCount, by: 5)), seed: 1, into: &tally)
        print("lying disk: \(tally.explored) crash states, \(tally.explored - tally.passed) failed")
        XCTAssertGreaterThan(tally.explored - tally.passed, tally.explored / 4)
        XCTAssertTrue(tally.kinds.keys.contains { $0.contains("an acknowledged commit is lost") }, "\(tally.kinds)")
    }

    // MARK: Running and exploring

    /// A finished workload: its file system with the recorded trace, and what each partition
    /// should hold at each crash point.
    struct Run {
        var path: String
        var fileSystem: SimulatedFileSystem
        var databaseCreationReturned: Int?
        var histories: [String: CommitHistory]
        /// What the workload did: its steps by kind, and from the trace, how many times a log was
        /// started (its header written at offset 0) and a partition file synced (a checkpoint).
        var counts: [String: Int] = [:]
    }

    /// Runs a random workload of `steps` steps on a new simulated disk.
    func runWorkload(seed: UInt64, steps: Int, ignoringFileSyncs: Bool = false) throws -> Run {
        let root = try temporaryDirectory(self)
        let path = root + "/db"
        // Only the lock file is real (`FileLock` does not go through `FileSystem`).
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let fileSystem = SimulatedFileSystem(roots: [root])
        fileSystem.ignoresFileSyncs = ignoringFileSyncs
        let workload = RandomWorkload(
            path: path, options: CrashTests.options, seed: seed, steps: steps, clock: { fileSystem.operationCount })
        try workload.run(on: fileSystem)
        var counts = workload.counts
        var names: [SimulatedFileSystem.FileID: String] = [:]
        for operation in fileSystem.operations {
            switch operation {
            case .create(let path, let file): names[file] = path
            case .rename(let from, let to):
                for (file, path) in names where path == from { names[file] = to }
            case .write(let file, 0, _) where names[file]?.hasSuffix(".pdb-log") ?? false:
                counts["new logs", default: 0] += 1
            case .sync(let file) where names[file]?.hasSuffix(".pdb") ?? false:
                counts["partition file syncs", default: 0] += 1
            default: break
            }
        }
        return Run(
            path: path, fileSystem: fileSystem, databaseCreationReturned: workload.databaseCreationReturned,
            histories: workload.histories, counts: counts)
    }

    /// How the unsynced changes at the replay's point may survive: lost, kept, and at random.
    /// When nothing is unsynced, all choices give the same disk, explored once.
    func choices(for replay: PowerLossReplay, point: Int, seed: UInt64, random count: Int) -> [PowerLossChoice] {
        guard replay.hasUnsyncedChanges else { return [.loseEverything] }
        var random = SeededGenerator(seed: seed ^ UInt64(point) &* 0x9E37_79B9_7F4A_7C15)
        return [.loseEverything, .keepEverything] + (0..<count).map { _ in .random(seed: random.next()) }
    }

    /// Crashes `run`'s trace at each of `points` (ascending) in several ways and verifies each disk.
    func explore(_ run: Run, points: [Int], seed: UInt64, random: Int = 2, into tally: inout CrashTally) {
        var replay = PowerLossReplay(of: run.fileSystem)
        let verifier = CrashVerifier(run: run)
        for point in points {
            replay.advance(to: point)
            for choice in choices(for: replay, point: point, seed: seed, random: random) {
                let problems = verifier.problems(on: replay.crash(choosing: choice), at: point)
                tally.record(
                    problems, state: "seed \(seed), point \(point) (after \(replay.describe(point - 1))), \(choice)")
            }
        }
        tally.recoveries += verifier.recoveries
    }

    /// Runs `Database.create` or `createPartition` again on a disk where a crash left them undone.
    func recreate(on fileSystem: SimulatedFileSystem, path: String) -> [String] {
        do {
            let db: Database
            do {
                db = try Database.open(at: path, region: eu, options: CrashTests.options, fileSystem: fileSystem)
            } catch PartitionDBError.noSuchDatabase {
                db = try Database.create(at: path, region: eu, options: CrashTests.options, fileSystem: fileSystem)
            }
            defer { try? db.close() }
            if try !db.partitionNames().contains(RandomWorkload.regional) {
                try db.createPartition(RandomWorkload.regional)
            }
            for name in RandomWorkload.partitionNames {
                let report = try db.partition(name).check()
                if !report.isClean { return ["after creating again, check of \(name): \(report.problems.prefix(3))"] }
            }
            return []
        } catch {
            return ["creating again after the crash failed: \(error)"]
        }
    }

    /// Opens a crashed disk, verifies it, commits one marker record to `p` and closes, all on the
    /// crashed disk's own trace. Returns that run, or nil when the disk holds no partition `p`.
    func recoverAndCommit(
        on crashed: SimulatedFileSystem, run: Run, firstCrash: Int, tally: inout CrashTally, state: String
    ) throws -> Run? {
        let verifier = CrashVerifier(run: run)
        let problems = verifier.problems(on: crashed, at: firstCrash)
        guard problems.isEmpty else {
            tally.record(problems, state: state)
            return nil
        }
        // The verification recovered and closed the database on `crashed`; the second round starts
        // again from the crashed disk, on a new trace that records the recovery too.
        let fileSystem = SimulatedFileSystem(image: crashed.initialImage)
        let options = CrashTests.options
        let db: Database
        do {
            db = try Database.open(at: run.path, region: eu, options: options, fileSystem: fileSystem)
        } catch PartitionDBError.noSuchDatabase {
            return nil
        }
        db.setResolver(RandomWorkload.resolver())
        var histories: [String: CommitHistory] = [:]
        var regional: Partition? = nil
        for name in RandomWorkload.partitionNames {
            guard try db.partitionNames().contains(name) else { continue }
            let partition = try db.partition(name)
            let history = run.histories[name]!.recovered(upTo: Int(partition.lastLSN.rawValue))
            histories[name] = history
            if name == RandomWorkload.regional { regional = partition }
        }
        guard let regional, var history = histories[RandomWorkload.regional] else {
            try db.close()
            return nil
        }
        var content = history.latest
        let marker = StoredRecord(value: Array("after recovery".utf8), owner: "s1")
        content["t0", default: [:]][Array("marker".utf8)] = marker
        history.begin(content, at: fileSystem.operationCount)
        try regional.write(durability: .durable) { tx in
            try tx.put("t0", Array("marker".utf8), marker.value, owner: try SubjectID("s1"))
        }
        history.acknowledge(at: fileSystem.operationCount)
        histories[RandomWorkload.regional] = history
        // In a fixed order, so the trace is the same in every process.
        for name in RandomWorkload.partitionNames where histories[name] != nil { try db.partition(name).close() }
        try db.close()
        return Run(path: run.path, fileSystem: fileSystem, databaseCreationReturned: 0, histories: histories)
    }
}

/// Opens crashed disks and judges what recovery made of them against the workload's histories.
///
/// Recovery depends only on the disk, and many crash states leave identical disks (for example,
/// losing everything unsynced at any point between two syncs), so each distinct disk is
/// recovered once and its outcome judged against every crash point that produced it.
final class CrashVerifier {
    /// What recovery made of one disk.
    enum DatabaseOutcome {
        case missing
        case failed(String)
        case opened([String: PartitionOutcome], closeProblem: String?)
    }

    enum PartitionOutcome {
        case missing
        case failed(String)
        /// Opened and checked: the recovered LSN, and what `check()` and the content comparison found.
        case recovered(lsn: UInt64, problems: [String])
    }

    let path: String
    let databaseCreationReturned: Int?
    let histories: [String: CommitHistory]
    private var outcomes: [DiskImage.Fingerprint: DatabaseOutcome] = [:]
    /// How many distinct disks were recovered.
    var recoveries: Int { outcomes.count }

    init(path: String, databaseCreationReturned: Int?, histories: [String: CommitHistory]) {
        self.path = path
        self.databaseCreationReturned = databaseCreationReturned
        self.histories = histories
    }

    convenience init(run: CrashTests.Run) {
        self.init(path: run.path, databaseCreationReturned: run.databaseCreationReturned, histories: run.histories)
    }

    /// What is wrong with the database on `fileSystem` after a crash at `point`; empty when it
    /// opens, every partition passes `check()`, and each holds an acceptable commit's content.
    func problems(on fileSystem: SimulatedFileSystem, at point: Int) -> [String] {
        let fingerprint = fileSystem.currentImage.fingerprint
        let outcome = outcomes[fingerprint] ?? recover(fileSystem)
        outcomes[fingerprint] = outcome
        return judge(outcome, at: point)
    }

    /// Opens the database and each partition on `fileSystem`, checks them, and compares each
    /// recovered content with the commit of the recovered LSN.
    func recover(_ fileSystem: SimulatedFileSystem) -> DatabaseOutcome {
        let db: Database
        do {
            db = try Database.open(at: path, region: eu, options: CrashTests.options, fileSystem: fileSystem)
        } catch PartitionDBError.noSuchDatabase {
            return .missing
        } catch {
            return .failed("Database.open threw \(error)")
        }
        var partitions: [String: PartitionOutcome] = [:]
        for (name, history) in histories.sorted(by: { $0.key < $1.key }) {
            do {
                let partition = try db.partition(name)
                let report = try partition.check()
                let lsn = partition.lastLSN.rawValue
                guard report.isClean else {
                    partitions[name] = .recovered(lsn: lsn, problems: ["check() found \(report.problems.prefix(3))"])
                    continue
                }
                let problem = history.contentProblem(recoveredLSN: lsn, content: try partition.content())
                partitions[name] = .recovered(lsn: lsn, problems: problem.map { [$0] } ?? [])
            } catch PartitionDBError.noSuchPartition {
                partitions[name] = .missing
            } catch {
                partitions[name] = .failed("opening or reading threw \(error)")
            }
        }
        do {
            try db.close()
            return .opened(partitions, closeProblem: nil)
        } catch {
            return .opened(partitions, closeProblem: "closing threw \(error)")
        }
    }

    /// The problems of `outcome` for a crash at `point`.
    func judge(_ outcome: DatabaseOutcome, at point: Int) -> [String] {
        switch outcome {
        case .missing:
            if let returned = databaseCreationReturned, returned <= point {
                return ["the database is gone, although Database.create had returned"]
            }
            return []
        case .failed(let problem):
            return [problem]
        case .opened(let partitions, let closeProblem):
            var problems = closeProblem.map { [$0] } ?? []
            for (name, history) in histories.sorted(by: { $0.key < $1.key }) {
                switch partitions[name]! {
                case .missing:
                    // The global partition is complete before the identity file exists.
                    if history.isCreated(at: point) || name == Database.globalPartitionName {
                        problems.append("partition \(name) is gone, although its creation had returned")
                    }
                case .failed(let problem):
                    problems.append("\(name): \(problem)")
                case .recovered(let lsn, let found):
                    problems += found.map { "\(name): \($0)" }
                    if let problem = history.lsnProblem(recoveredLSN: lsn, at: point) {
                        problems.append("\(name): \(problem)")
                    }
                }
            }
            return problems
        }
    }
}

/// Counts crash states, and keeps the first failures and how often each kind of failure occurred.
struct CrashTally {
    private(set) var explored = 0
    private(set) var passed = 0
    private(set) var failures: [String] = []
    /// Failures by kind: the first problem's text with numbers and paths taken out.
    private(set) var kinds: [String: Int] = [:]
    /// Distinct disks recovered; the rest of the states reused an identical disk's recovery.
    var recoveries = 0

    /// Counts one crash state; `state` describes it, for a failure.
    mutating func record(_ problems: [String], state: @autoclosure () -> String) {
        explored += 1
        guard let first = problems.first else {
            passed += 1
            return
        }
        kinds[CrashTally.kind(of: first), default: 0] += 1
        if failures.count < 12 { failures.append("\(state()): \(problems.joined(separator: " | "))") }
    }

    static func kind(of problem: String) -> String {
        let words = problem.split(separator: " ").map { word in
            word.contains("/") ? "PATH" : String(word.map { $0.isNumber ? "#" : $0 })
        }
        return words.joined(separator: " ")
    }

    func report(_ test: XCTestCase, label: String) {
        print("\(label) explored: \(explored), passed: \(passed) (distinct crashed disks recovered: \(recoveries))")
        for (kind, count) in kinds.sorted(by: { $0.value > $1.value }) { print("  \(count) failed: \(kind)") }
        for failure in failures { print("  FAILED \(failure)") }
        XCTAssertEqual(
            passed, explored, "\(explored - passed) of \(explored) \(label) failed; first: \(failures.first ?? "")")
    }
}
