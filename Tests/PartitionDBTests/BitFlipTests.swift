import Foundation
import XCTest

@testable import PartitionDB

/// Corruption: random bit flips in random pages of a closed partition and in a partition whose
/// log still holds commits. Every flip must be detected (a typed error naming the file and the
/// page, from opening, from `check()` and from reading the page) or be provably harmless (the
/// reopened partition checks clean and holds exactly the content of a commit); never a crash, a
/// hang, or wrong data from a read.
///
/// PDB_BITFLIPS sets the number of flips (default 600), PDB_BITFLIP_SEED the seed. Method and
/// figures: spec/testing.md#corruption
final class BitFlipTests: XCTestCase {
    struct Entry: Equatable {
        var value: [UInt8]
        var owner: String
    }
    /// Table -> key -> record; an empty table is still a table.
    typealias Model = [String: [[UInt8]: Entry]]

    /// A partition as files on disk, with the content of every commit those files may recover to.
    struct Fixture {
        var files: [String: Data]
        /// LSN -> content, for every commit recovery may legitimately stop at.
        var models: [UInt64: Model]
        var newestLSN: UInt64
        /// The bytes of the log that hold its header and the frames of its commits; stale frames
        /// of an older log follow them.
        var liveLogBytes = 0
    }

    /// How one flip ended.
    enum Outcome {
        /// A typed error named the file and the page.
        case detected
        /// The partition reopened clean with the content of its newest commit.
        case harmless
        /// A flip in the log ended recovery early: clean, with the content of an older commit.
        case tailDropped
        /// A flip in a frame that frames of later commits follow: recovery kept an older commit,
        /// preserved the log, and `check()` reports the preserved copy (and nothing else).
        case damageReported
    }

    struct Tally {
        var injected = 0
        var detected = 0
        var harmless = 0
        var tailDropped = 0
        var damageReported = 0
        var partitionFile = 0
        var log = 0

        mutating func count(_ outcome: Outcome) {
            injected += 1
            switch outcome {
            case .detected: detected += 1
            case .harmless: harmless += 1
            case .tailDropped: tailDropped += 1
            case .damageReported: damageReported += 1
            }
        }
    }

    static let pageSize = 4096
    static let owners = ["s0", "s1", "s2"]

    /// Detections that were `badFormat` naming the file but no page (flips in page 0's fixed
    /// fields), and those of them where the log held a valid page 0 that recovery could have used.
    var badFormatWithoutPage = 0
    var badFormatDespiteLogCopy = 0

    func testEveryBitFlipIsDetectedOrHarmless() throws {
        let environment = ProcessInfo.processInfo.environment
        let flips = environment["PDB_BITFLIPS"].flatMap { Int($0) } ?? 600
        let seed = environment["PDB_BITFLIP_SEED"].flatMap { UInt64($0) } ?? 20_261_127
        print("bit flip test: seed \(seed), \(flips) flips (PDB_BITFLIP_SEED / PDB_BITFLIPS to change)")
        var random = SeededGenerator(seed: seed)

        let closed = try makeClosedPartition(&random)
        let logged = try makeLoggedPartition(&random)
        // The damaged files of the current flip stay here if the process dies, as a reproducer.
        let work = try temporaryDirectory(self, "work")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let watchdog = Watchdog(limit: 60)
        defer { watchdog.stop() }

        var tally = Tally()
        for flip in 0..<flips {
            // Half on a closed partition (empty log), half on one whose log holds commits; there,
            // half of the flips go to the log.
            let fixture = flip % 2 == 0 ? closed : logged
            let inLog = flip % 2 == 1 && random.below(2) == 0
            let name = inLog ? "p.pdb-log" : "p.pdb"
            var damaged = fixture.files[name]!
            let region: Range<Int>
            if inLog {
                // Three flips in four hit the live part of the log, the rest anywhere in it.
                region = random.below(4) == 0 ? 0..<damaged.count : 0..<fixture.liveLogBytes
            } else {
                let pages = damaged.count / BitFlipTests.pageSize
                let page = random.below(pages)
                region = (page * BitFlipTests.pageSize)..<((page + 1) * BitFlipTests.pageSize)
            }
            let offsets = BitFlipTests.flipBits(in: &damaged, region: region, &random)
            // Copies of damaged logs preserved by an earlier flip's recovery belong to that flip.
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: work)
            for leftover in leftovers where leftover.contains(".damaged-") {
                try FileManager.default.removeItem(atPath: work + "/" + leftover)
            }
            for (file, bytes) in fixture.files { try (file == name ? damaged : bytes).write(to: url(work, file)) }
            let description = "flip \(flip): \(name) bytes \(offsets) (seed \(seed))"
            watchdog.arm(description)
            let outcome: Outcome
            if inLog {
                tally.log += 1
                outcome = try reopenAfterLogFlip(work, fixture, description)
            } else {
                tally.partitionFile += 1
                let page = UInt32(offsets[0] / BitFlipTests.pageSize)
                outcome = try reopenAfterPartitionFlip(
                    work, fixture, page: page, mayBeHarmless: fixture.files["p.pdb-log"]!.count > 0, description)
            }
            watchdog.disarm()
            tally.count(outcome)
            if (testRun?.totalFailureCount ?? 0) > 0 { break }
        }
        print(
            "bit flips injected: \(tally.injected), detected: \(tally.detected), harmless: \(tally.harmless), "
                + "log tail dropped: \(tally.tailDropped), log damage reported: \(tally.damageReported) "
                + "(\(tally.partitionFile) in partition files, \(tally.log) in logs; "
                + "\(badFormatWithoutPage) detected as bad format without a page, \(badFormatDespiteLogCopy) of them "
                + "with a valid page 0 in the log)"
        )
        XCTAssertEqual(tally.injected, tally.detected + tally.harmless + tally.tailDropped + tally.damageReported)
    }

    func url(_ directory: String, _ file: String) -> URL { URL(fileURLWithPath: directory + "/" + file) }

    // MARK: Flips

    /// Flips one bit (four times in five) or a burst of 2 to 8 distinct bits, all in `region`;
    /// returns the byte offsets, the first one chosen first. The bits are distinct so that no two
    /// flips cancel out.
    static func flipBits(in data: inout Data, region: Range<Int>, _ random: inout SeededGenerator) -> [Int] {
        let count = random.below(5) == 0 ? 2 + random.below(7) : 1
        let first = region.lowerBound + random.below(region.count)
        var flipped: Set<Int> = []
        var offsets: [Int] = []
        while offsets.count < count {
            // A burst stays within 64 bytes, like a damaged sector would.
            let offset =
                offsets.isEmpty
                ? first : min(region.upperBound - 1, max(region.lowerBound, first + random.below(128) - 64))
            let bit = random.below(8)
            guard flipped.insert(offset * 8 + bit).inserted else { continue }
            data[offset] ^= UInt8(1 << bit)
            offsets.append(offset)
        }
        return offsets
    }

    // MARK: Reopening

    /// A flip in the partition file: opening or `check()` must name the page, a direct read of it
    /// must throw, and every read must return the model's data or throw for that page. With a log
    /// that holds the page, recovery rewrites it: then the flip is harmless.
    func reopenAfterPartitionFlip(
        _ directory: String, _ fixture: Fixture, page: UInt32, mayBeHarmless: Bool, _ description: String
    ) throws -> Outcome {
        let file = directory + "/p.pdb"
        let database = try Database.open(at: directory, region: eu)
        defer { try? database.close() }
        let partition: Partition
        do {
            partition = try database.partition("p")
        } catch PartitionDBError.corruptPage(let damagedFile, let damagedPage, _) {
            XCTAssertEqual(damagedFile, file, description)
            XCTAssertEqual(damagedPage, page, description)
            return .detected
        } catch PartitionDBError.badFormat(let damagedFile, let reason) {
            // The format probe reads page 0's fixed fields before its checksum is known, so a flip
            // there is reported without the page, even when the log holds a good copy of page 0.
            XCTAssertEqual(damagedFile, file, description)
            XCTAssertEqual(page, 0, "\(description): bad format (\(reason)) for a page other than 0")
            badFormatWithoutPage += 1
            if mayBeHarmless { badFormatDespiteLogCopy += 1 }
            return .detected
        }
        let report = try partition.check()
        let lsn = partition.lastLSN.rawValue
        if report.isClean {
            XCTAssertTrue(mayBeHarmless, "\(description): undetected in a closed partition")
            XCTAssertEqual(lsn, fixture.newestLSN, "\(description): clean, but at LSN \(lsn)")
            try assertReads(partition, fixture.models[lsn] ?? [:], damaged: nil, description)
            return .harmless
        }
        XCTAssertEqual(report.damagedPages, [page], "\(description): \(report.problems.prefix(4))")
        XCTAssertTrue(
            report.problems.contains { $0.page == page && $0.file == file }, "\(description): \(report.problems)")
        XCTAssertThrowsError(try partition.pager.page(PageNumber(page), in: partition.pager.latestSnapshot)) { error in
            guard case .corruptPage(let damagedFile, let damagedPage, _) = error as? PartitionDBError else {
                return XCTFail("\(description): \(error)")
            }
            XCTAssertEqual(damagedFile, file, description)
            XCTAssertEqual(damagedPage, page, description)
        }
        XCTAssertEqual(lsn, fixture.newestLSN, description)
        try assertReads(partition, fixture.models[lsn] ?? [:], damaged: (file, page), description)
        return .detected
    }

    /// A flip in the log: recovery keeps the commits before the damaged frame. The partition must
    /// open and hold the content of the commit it recovered to, no older than the partition
    /// file's own. It checks clean when the frames after the damage are of one commit only (a torn
    /// tail); when frames of later commits follow, the log is preserved and `check()` reports the
    /// copy and nothing else (spec/file-format.md#damage-in-the-log).
    func reopenAfterLogFlip(_ directory: String, _ fixture: Fixture, _ description: String) throws -> Outcome {
        let log = directory + "/p.pdb-log"
        let database = try Database.open(at: directory, region: eu)
        defer { try? database.close() }
        let partition: Partition
        do {
            partition = try database.partition("p")
        } catch let error as PartitionDBError {
            // A typed error that names the log is a detection too.
            switch error {
            case .corruptPage(let file, _, _), .badFormat(let file, _):
                XCTAssertEqual(file, log, "\(description): \(error)")
                return .detected
            default:
                XCTFail("\(description): \(error)")
                return .detected
            }
        }
        let report = try partition.check()
        let preserved = partition.recoveryWarnings.map(\.preservedLog)
        XCTAssertEqual(Set(report.problems.map(\.file)), Set(preserved), "\(description): \(report.problems.prefix(4))")
        for path in preserved {
            XCTAssertTrue(path.hasPrefix(log + ".damaged-"), description)
            XCTAssertTrue(FileManager.default.fileExists(atPath: path), description)
        }
        let lsn = partition.lastLSN.rawValue
        guard let model = fixture.models[lsn] else {
            XCTFail("\(description): recovered LSN \(lsn), not a commit the files can recover to")
            return .tailDropped
        }
        try assertReads(partition, model, damaged: nil, description)
        if !preserved.isEmpty {
            XCTAssertLessThan(lsn, fixture.newestLSN, description)
            return .damageReported
        }
        return lsn == fixture.newestLSN ? .harmless : .tailDropped
    }

    /// Reads every table whole and every record by key; each must equal `model`, or throw
    /// `corruptPage` for the damaged page.
    func assertReads(
        _ partition: Partition, _ model: Model, damaged: (file: String, page: UInt32)?, _ description: String
    ) throws {
        func expectDamage(_ error: Error) {
            guard let damaged, case .corruptPage(let file, let page, _) = error as? PartitionDBError else {
                return XCTFail("\(description): read failed: \(error)")
            }
            XCTAssertEqual(file, damaged.file, description)
            XCTAssertEqual(page, damaged.page, "\(description): \(error)")
        }
        do {
            try partition.read { tx in
                do {
                    let tables = try tx.tables()
                    XCTAssertEqual(tables, model.keys.sorted(), description)
                } catch { expectDamage(error) }
                for (table, records) in model {
                    do {
                        var found: [[UInt8]: Entry] = [:]
                        try tx.scan(table) { record in
                            found[record.key] = Entry(value: record.value, owner: record.owner?.rawValue ?? "")
                            return true
                        }
                        if found != records { XCTFail("\(description): table \(table) returned wrong data") }
                        let count = try tx.count(table)
                        XCTAssertEqual(count, records.count, description)
                    } catch { expectDamage(error) }
                    for (key, entry) in records {
                        do {
                            let record = try tx.record(table, key)
                            if record?.value != entry.value || record?.owner?.rawValue ?? "" != entry.owner {
                                XCTFail("\(description): get in table \(table) returned wrong data")
                            }
                        } catch { expectDamage(error) }
                    }
                }
            }
        } catch { expectDamage(error) }
    }

    // MARK: Fixtures

    func makeDatabase(_ path: String, autoCheckpointFrames: Int = 4096) throws -> (Database, Partition) {
        var options = Options()
        options.autoCheckpointFrames = autoCheckpointFrames
        let database = try Database.create(at: path, region: eu, options: options)
        let resolver = FixedResolver()
        for owner in BitFlipTests.owners { resolver.set(owner, eu) }
        database.setResolver(resolver)
        return (database, try database.createPartition("p"))
    }

    /// Random puts (small, medium and overflow values) and deletes in `tables`, mirrored in `model`.
    func randomCommit(
        _ partition: Partition, _ model: inout Model, tables: [String], operations: Int, durability: Durability,
        _ random: inout SeededGenerator
    ) throws {
        var next = model
        try partition.write(durability: durability) { tx in
            for _ in 0..<operations {
                let table = tables[random.below(tables.count)]
                if next[table] == nil {
                    _ = try tx.createTable(table)
                    next[table] = [:]
                }
                let keys = Array(next[table]!.keys)
                if !keys.isEmpty && random.below(4) == 0 {
                    let key = keys[random.below(keys.count)]
                    _ = try tx.delete(table, key)
                    next[table]![key] = nil
                    continue
                }
                let key = Array("key-\(random.below(500))".utf8)
                let length =
                    random.below(10) == 0 ? 5000 + random.below(20_000) : random.below(5) == 0 ? 800 : random.below(200)
                let value = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                let owner = BitFlipTests.owners[random.below(BitFlipTests.owners.count)]
                try tx.put(table, key, value, owner: try SubjectID(owner))
                next[table]![key] = Entry(value: value, owner: owner)
            }
        }
        model = next
    }

    /// A closed partition: four tables (one of them dropped again), overflow values and deleted
    /// records, so the file holds every kind of page, free pages included; its log is empty.
    func makeClosedPartition(_ random: inout SeededGenerator) throws -> Fixture {
        let path = try temporaryDirectory(self, "closed")
        let (database, partition) = try makeDatabase(path)
        var model: Model = [:]
        let tables = ["accounts", "events", "orders", "scratch"]
        for _ in 0..<12 {
            try randomCommit(partition, &model, tables: tables, operations: 60, durability: .durable, &random)
        }
        // Deletes and a dropped table leave free pages behind.
        try partition.write { tx in
            _ = try tx.dropTable("scratch")
            for (key, _) in model["events"] ?? [:] where key.last! % 2 == 0 { _ = try tx.delete("events", key) }
        }
        model["scratch"] = nil
        model["events"] = model["events"]?.filter { $0.key.last! % 2 != 0 }
        let lsn = partition.lastLSN.rawValue
        let info = try partition.info()
        XCTAssertGreaterThan(info.freePages, 5, "the closed partition should have free pages")
        try database.close()
        let files = try readFiles(path)
        XCTAssertEqual(files["p.pdb-log"]?.count, 0, "a clean close empties the log")
        return Fixture(files: files, models: [lsn: model], newestLSN: lsn)
    }

    /// A partition copied while open: its file holds the commits up to a checkpoint, its log
    /// eight `.noSync` commits after it, written over a longer log of older commits, so stale
    /// frames of another salt follow the valid ones.
    func makeLoggedPartition(_ random: inout SeededGenerator) throws -> Fixture {
        let path = try temporaryDirectory(self, "logged")
        let (database, partition) = try makeDatabase(path, autoCheckpointFrames: 1 << 20)
        var model: Model = [:]
        let tables = ["accounts", "events", "orders"]
        for _ in 0..<10 {
            try randomCommit(partition, &model, tables: tables, operations: 50, durability: .durable, &random)
        }
        try partition.checkpoint()
        var models: [UInt64: Model] = [partition.lastLSN.rawValue: model]
        for _ in 0..<8 {
            try randomCommit(partition, &model, tables: tables, operations: 6, durability: .noSync, &random)
            models[partition.lastLSN.rawValue] = model
        }
        // The copy is what a process crash at this instant leaves: every write is in the files.
        let files = try readFiles(path)
        let live = WriteAheadLog.headerSize + partition.pager.wal.frameCount * (WriteAheadLog.frameHeaderSize + 4096)
        let newest = partition.lastLSN.rawValue
        try database.close()
        XCTAssertGreaterThan(files["p.pdb-log"]?.count ?? 0, live, "stale frames should follow the live ones")
        return Fixture(files: files, models: models, newestLSN: newest, liveLogBytes: live)
    }

    func readFiles(_ path: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: path) where name != "LOCK" {
            files[name] = try Data(contentsOf: url(path, name))
        }
        return files
    }
}

fileprivate extension SeededGenerator {
    /// A number in 0..<bound.
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

/// Aborts the process, naming the flip, when one reopening takes longer than `limit` seconds:
/// a hang must not pass as a slow test.
final class Watchdog: @unchecked Sendable {
    /// Protects `current`, `deadline` and `stopped`.
    private let lock = NSLock()
    private var current: String? = nil
    private var deadline = Date.distantFuture
    private var stopped = false
    private let limit: TimeInterval

    init(limit: TimeInterval) {
        self.limit = limit
        Thread { [self] in watch() }.start()
    }

    func arm(_ description: String) {
        lock.withLock {
            current = description
            deadline = Date().addingTimeInterval(limit)
        }
    }

    func disarm() { lock.withLock { deadline = .distantFuture } }
    func stop() { lock.withLock { stopped = true } }

    private func watch() {
        while true {
            Thread.sleep(forTimeInterval: 1)
            let (expired, description, done) = lock.withLock { (Date() > deadline, current, stopped) }
            if done { return }
            if expired {
                FileHandle.standardError.write(Data("hang: \(description ?? "?") took over \(limit) s\n".utf8))
                abort()
            }
        }
    }
}
