import Foundation
import XCTest

@testable import PartitionDB

/// Randomized model-based test: random puts, deletes, gets and scans across several tables with
/// random key and value sizes (overflow values included), random commits and rollbacks, and
/// reopening at random points, each result compared with an in-memory model.
///
/// PDB_MODEL_SEED picks another seed, PDB_MODEL_OPS another number of operations.
final class ModelTests: XCTestCase {
    struct Entry: Equatable {
        var value: [UInt8]
        var owner: String
    }
    /// One table of the model: the records, and their keys in order for scans.
    struct TableModel: Equatable {
        var entries: [[UInt8]: Entry] = [:]
        var sortedKeys: [[UInt8]] = []

        /// The index of the first key >= `key`.
        func lowerBound(_ key: [UInt8]) -> Int {
            var low = 0
            var high = sortedKeys.count
            while low < high {
                let mid = (low + high) / 2
                if compareBytes(sortedKeys[mid], key) < 0 { low = mid + 1 } else { high = mid }
            }
            return low
        }

        mutating func put(_ key: [UInt8], _ entry: Entry) {
            if entries.updateValue(entry, forKey: key) == nil { sortedKeys.insert(key, at: lowerBound(key)) }
        }

        mutating func delete(_ key: [UInt8]) {
            if entries.removeValue(forKey: key) != nil { sortedKeys.remove(at: lowerBound(key)) }
        }
    }
    typealias Model = [String: TableModel]

    struct Rollback: Error {}

    func testRandomOperationsMatchModel() throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["PDB_MODEL_SEED"].flatMap { UInt64($0) } ?? 20_261_127
        let totalOperations = environment["PDB_MODEL_OPS"].flatMap { Int($0) } ?? 200_000
        print("model test: seed \(seed), \(totalOperations) operations (PDB_MODEL_SEED / PDB_MODEL_OPS to change)")
        var random = SeededGenerator(seed: seed)

        let path = try temporaryDirectory(self)
        let resolver = FixedResolver()
        let subjects = (0..<5).map { "subject-\($0)" }
        for s in subjects { resolver.set(s, eu) }
        var options = Options()
        options.cachePages = 512  // small, so pages really come and go from disk
        options.autoCheckpointFrames = 300
        options.directWritePages = 8  // larger commits take the direct path
        options.relocationPages = 8  // and commits that change 8 existing pages move them
        var db = try Database.create(at: path, region: eu, options: options)
        db.setResolver(resolver)
        var partition = try db.createPartition("p")
        let tables = ["t0", "t1", "t2", "t3"]

        var model: Model = [:]
        var operations = 0
        var commits = 0
        var rollbacks = 0
        var reopens = 0

        func randomKey() -> [UInt8] {
            let length: Int
            switch Int.random(in: 0..<100, using: &random) {
            case 0: length = Int.random(in: 200...WriteTransaction.maxKeySize, using: &random)
            case 1..<10: length = Int.random(in: 17...200, using: &random)
            default: length = Int.random(in: 1...16, using: &random)
            }
            // A small alphabet so keys collide and replace each other often.
            return (0..<length).map { _ in UInt8.random(in: 97...100, using: &random) }
        }

        func randomValue() -> [UInt8] {
            let length: Int
            switch Int.random(in: 0..<1000, using: &random) {
            case 0: length = Int.random(in: 100_000...1_200_000, using: &random)
            case 1..<20: length = Int.random(in: 1_400...20_000, using: &random)
            default: length = Int.random(in: 0...300, using: &random)
            }
            var value = [UInt8](repeating: 0, count: length)
            let fill = UInt8.random(in: 0...255, using: &random)
            for i in stride(from: 0, to: length, by: 97) { value[i] = fill &+ UInt8(truncatingIfNeeded: i) }
            return value
        }

        func compareAll(_ tx: ReadTransaction, _ expected: Model) throws {
            for table in tables {
                let want = expected[table]?.entries ?? [:]
                guard try tx.hasTable(table) else {
                    XCTAssertTrue(want.isEmpty, "table \(table) missing")
                    continue
                }
                XCTAssertEqual(try tx.count(table), want.count, "count of \(table)")
                var seen = 0
                var previous: [UInt8]? = nil
                try tx.scan(table) { record in
                    if let previous { XCTAssertLessThan(compareBytes(previous, record.key), 0) }
                    previous = record.key
                    XCTAssertEqual(want[record.key], Entry(value: record.value, owner: record.owner?.rawValue ?? ""))
                    seen += 1
                    return true
                }
                XCTAssertEqual(seen, want.count, "records in \(table)")
            }
        }

        func checkScan(_ tx: ReadTransaction, _ expected: Model, _ table: String) throws {
            guard try tx.hasTable(table) else { return }
            let a = randomKey()
            let b = randomKey()
            let lowInclusive = Bool.random(using: &random)
            let highInclusive = Bool.random(using: &random)
            let reverse = Bool.random(using: &random)
            let limit = Int.random(in: 1...50, using: &random)
            let range = KeyRange(
                lower: lowInclusive ? .inclusive(a) : .exclusive(a),
                upper: highInclusive ? .inclusive(b) : .exclusive(b))
            let model = expected[table] ?? TableModel()
            var want: [[UInt8]] = []
            if reverse {
                var i = model.lowerBound(b) + (highInclusive && model.entries[b] != nil ? 1 : 0) - 1
                while i >= 0, want.count < limit, range.isAboveLower(model.sortedKeys[i]) {
                    want.append(model.sortedKeys[i])
                    i -= 1
                }
            } else {
                var i = model.lowerBound(a) + (!lowInclusive && model.entries[a] != nil ? 1 : 0)
                while i < model.sortedKeys.count, want.count < limit, range.isBelowUpper(model.sortedKeys[i]) {
                    want.append(model.sortedKeys[i])
                    i += 1
                }
            }
            var got: [[UInt8]] = []
            try tx.scan(table, range: range, reverse: reverse) { record in
                got.append(record.key)
                return got.count < limit
            }
            XCTAssertEqual(got, want, "scan of \(table)")
        }

        while operations < totalOperations {
            let opsInTransaction = Int.random(in: 1...150, using: &random)
            let willCommit = Int.random(in: 0..<100, using: &random) < 85
            var pending = model
            do {
                try partition.write(durability: Int.random(in: 0..<20, using: &random) == 0 ? .durable : .noSync) {
                    tx in
                    for _ in 0..<opsInTransaction {
                        operations += 1
                        let table = tables[Int.random(in: 0..<tables.count, using: &random)]
                        switch Int.random(in: 0..<100, using: &random) {
                        case 0..<60:
                            let key = randomKey()
                            let value = randomValue()
                            let owner = subjects[Int.random(in: 0..<subjects.count, using: &random)]
                            try tx.put(table, key, value, owner: try SubjectID(owner))
                            pending[table, default: TableModel()].put(key, Entry(value: value, owner: owner))
                        case 60..<85:
                            let key: [UInt8]
                            if let keys = pending[table]?.sortedKeys, !keys.isEmpty, Bool.random(using: &random) {
                                key = keys[Int.random(in: 0..<keys.count, using: &random)]
                            } else {
                                key = randomKey()
                            }
                            let existed = try tx.delete(table, key)
                            XCTAssertEqual(existed, pending[table]?.entries[key] != nil, "delete result")
                            pending[table]?.delete(key)
                        case 85..<95:
                            let key = randomKey()
                            let got = try tx.hasTable(table) ? try tx.record(table, key) : nil
                            let want = pending[table]?.entries[key]
                            XCTAssertEqual(got.map { Entry(value: $0.value, owner: $0.owner?.rawValue ?? "") }, want)
                        default:
                            try checkScan(tx, pending, table)
                        }
                    }
                    if !willCommit { throw Rollback() }
                }
                model = pending
                commits += 1
            } catch is Rollback {
                rollbacks += 1
            }

            // Readers see the committed model.
            if Int.random(in: 0..<10, using: &random) == 0 {
                try partition.read { tx in
                    try checkScan(tx, model, tables[Int.random(in: 0..<tables.count, using: &random)])
                }
            }
            if Int.random(in: 0..<200, using: &random) == 0 {
                try partition.read { tx in try compareAll(tx, model) }
            }
            // Reopen at random points: everything committed must come back.
            if Int.random(in: 0..<150, using: &random) == 0 {
                reopens += 1
                try db.close()
                db = try Database.open(at: path, region: eu, options: options)
                db.setResolver(resolver)
                partition = try db.partition("p")
                try partition.read { tx in try compareAll(tx, model) }
            }
        }
        try partition.read { tx in try compareAll(tx, model) }
        let report = try partition.check()
        XCTAssertTrue(report.isClean, "check found: \(report.problems.prefix(10))")
        try db.close()
        db = try Database.open(at: path, region: eu, options: options)
        partition = try db.partition("p")
        try partition.read { tx in try compareAll(tx, model) }
        XCTAssertTrue(try partition.check().isClean)
        print("model test: \(operations) operations, \(commits) commits, \(rollbacks) rollbacks, \(reopens) reopens")
        try db.close()
    }
}
