import XCTest

@testable import PartitionDB

/// A record as the crash and fault tests compare it.
struct StoredRecord: Equatable {
    var value: [UInt8]
    var owner: String?
}

/// Everything a partition holds, as the tests see it: each table (empty ones included) with its
/// records by key.
typealias PartitionContent = [String: [[UInt8]: StoredRecord]]

extension Partition {
    /// The whole content of the newest commit, read through a read transaction.
    func content() throws -> PartitionContent {
        try read { tx in
            var content: PartitionContent = [:]
            for table in try tx.tables() {
                var records: [[UInt8]: StoredRecord] = [:]
                try tx.scan(table) { record in
                    records[record.key] = StoredRecord(value: record.value, owner: record.owner?.rawValue)
                    return true
                }
                content[table] = records
            }
            return content
        }
    }
}

/// What one partition should hold after a crash: its content after every commit (the LSN is
/// the index; LSN 0 is the new, empty partition), when its creation returned, and when each
/// commit began and returned, measured on a clock of I/O operations (for the simulated file system, the
/// trace position). A crash "at point k" happens after the first k operations.
struct CommitHistory {
    /// The content after each commit; `states[lsn]`.
    private(set) var states: [PartitionContent] = [[:]]
    /// When each commit's `write` began; an operation at or after it may belong to the commit.
    private(set) var began: [Int] = [0]
    /// When each commit's `write` returned; nil while it has not (or when it threw).
    private(set) var returned: [Int?] = [0]
    /// When creating the partition returned.
    var creationReturned: Int? = nil

    /// The content after the newest commit.
    var latest: PartitionContent { states[states.count - 1] }

    /// Records that the next commit (LSN `states.count`) is about to be written with `content`.
    mutating func begin(_ content: PartitionContent, at clock: Int) {
        states.append(content)
        began.append(clock)
        returned.append(nil)
    }

    /// Records that the newest commit's `write` returned.
    mutating func acknowledge(at clock: Int) {
        returned[returned.count - 1] = clock
    }

    /// The history of what survived: the commits up to `lsn`, all of them counted as on disk
    /// before any later operation (clock 0), for a second round of crashes after recovery.
    func recovered(upTo lsn: Int) -> CommitHistory {
        var history = CommitHistory()
        history.states = Array(states[0...lsn])
        history.began = Array(repeating: 0, count: lsn + 1)
        history.returned = Array(repeating: 0, count: lsn + 1)
        history.creationReturned = 0
        return history
    }

    /// The newest commit whose `write` had returned at crash point `point`.
    func lastAcknowledged(at point: Int) -> Int {
        var lsn = 0
        for (i, clock) in returned.enumerated() where clock.map({ $0 <= point }) ?? false { lsn = i }
        return lsn
    }

    /// The newest commit that had begun writing before crash point `point`.
    func lastBegun(at point: Int) -> Int {
        var lsn = 0
        for (i, clock) in began.enumerated() where clock < point { lsn = i }
        return lsn
    }

    /// Whether creating the partition had returned at crash point `point`.
    func isCreated(at point: Int) -> Bool { creationReturned.map { $0 <= point } ?? false }

    /// Why a partition recovered after a crash at `point` with `content` at `lsn` breaks the
    /// guarantees, or nil when it is fine: it must be the state of one commit, no older than the
    /// newest commit that had returned, and no newer than the newest one that had begun.
    func problem(recoveredLSN lsn: UInt64, content: PartitionContent, at point: Int) -> String? {
        lsnProblem(recoveredLSN: lsn, at: point) ?? contentProblem(recoveredLSN: lsn, content: content)
    }

    /// Why recovering commit `lsn` after a crash at `point` is wrong: older than an acknowledged
    /// commit, or newer than any commit that had begun.
    func lsnProblem(recoveredLSN lsn: UInt64, at point: Int) -> String? {
        let acknowledged = lastAcknowledged(at: point)
        let begun = max(acknowledged, lastBegun(at: point))
        guard lsn >= UInt64(acknowledged) else {
            return "recovered LSN \(lsn), but commit \(acknowledged) had returned: an acknowledged commit is lost"
        }
        guard lsn <= UInt64(begun) else {
            return "recovered LSN \(lsn), but only commits up to \(begun) had begun"
        }
        return nil
    }

    /// Why `content` is not what commit `lsn` left, or nil when it is exactly that.
    func contentProblem(recoveredLSN lsn: UInt64, content: PartitionContent) -> String? {
        guard lsn < UInt64(states.count) else { return "recovered LSN \(lsn), beyond every commit made" }
        guard content == states[Int(lsn)] else {
            return "recovered LSN \(lsn), but the content is not that commit's: "
                + CommitHistory.difference(content, states[Int(lsn)])
        }
        return nil
    }

    /// A short account of how `found` differs from `expected`, naming tables and key counts only.
    static func difference(_ found: PartitionContent, _ expected: PartitionContent) -> String {
        var notes: [String] = []
        for table in Set(found.keys).union(expected.keys).sorted() {
            guard let have = found[table] else {
                notes.append("table \(table) missing")
                continue
            }
            guard let want = expected[table] else {
                notes.append("unexpected table \(table)")
                continue
            }
            let missing = want.keys.filter { have[$0] == nil }.count
            let extra = have.keys.filter { want[$0] == nil }.count
            let changed = want.keys.filter { have[$0] != nil && have[$0] != want[$0] }.count
            if missing + extra + changed > 0 {
                notes.append("\(table): \(missing) missing, \(extra) extra, \(changed) changed records")
            }
        }
        return notes.joined(separator: "; ")
    }
}
