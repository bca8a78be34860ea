import Foundation
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// Real process kills: `pdb apply --durable` runs as a child process and is killed with SIGKILL at
/// a random moment; after every kill the database must pass `pdb check`, and its content must be
/// the model's at a commit boundary at or after the last commit whose `{"committed":LSN}` line
/// was read. One database serves every kill, so each recovery starts from the previous one.
///
/// PDB_KILLS sets the number of kills (default 200), PDB_KILL_SEED the seed. Method and figures:
/// spec/testing.md#real-process-kills
final class KillTests: PDBTestCase {
    /// One record of the model: a value and its owner.
    struct Entry: Equatable {
        var value: [UInt8]
        var owner: String
    }
    /// Table name -> key -> record.
    typealias Model = [String: [[UInt8]: Entry]]

    /// One operation of a transaction, with the JSON line that carries it.
    enum Operation {
        case put(table: String, key: [UInt8], entry: Entry)
        case delete(table: String, key: [UInt8])
    }

    static let tables = ["orders", "profiles"]
    static let owners = ["alice", "carol", "dave"]
    /// The key under which each transaction writes the LSN it will commit at.
    static let sequenceKey = Array("~seq".utf8)

    func testAcknowledgedCommitsSurviveSIGKILL() throws {
        let environment = ProcessInfo.processInfo.environment
        let kills = environment["PDB_KILLS"].flatMap { Int($0) } ?? 200
        let seed = environment["PDB_KILL_SEED"].flatMap { UInt64($0) } ?? 20_261_127
        print("kill test: seed \(seed), \(kills) kills (PDB_KILL_SEED / PDB_KILLS to change)")
        // A write to the pipe of a killed child must fail with EPIPE, not kill the test.
        signal(SIGPIPE, SIG_IGN)
        var random = SplitMix64(state: seed)

        try makeDatabase()
        for owner in KillTests.owners where owner != "alice" { assertExit(try pdb("home", "set", db, owner, "eu"), 0) }

        var model: Model = [:]
        var lastLSN: UInt64 = 0
        var acknowledgedTotal = 0
        var lost = 0
        var killsDone = 0
        var killedEarly = 0
        let started = Date()

        for round in 0..<kills {
            let child = try ApplyChild(binary: PDBTestCase.binary, arguments: ["apply", db, "users", "--durable"])
            var sent: [[Operation]] = []
            // How many acknowledged commits to wait for, and how many transactions to keep in flight.
            let target = random.below(100) < 15 ? 0 : 1 + random.below(12)
            let window = 1 + random.below(4)
            var acknowledged = 0
            var stateAtSend = model
            var childDied = false
            func send(_ transaction: [Operation], commit: Bool) {
                var text = transaction.map { KillTests.line($0) }.joined(separator: "\n")
                if commit { text += "\n" + #"{"op":"commit"}"# }
                if !child.write(text + "\n") { childDied = true }
            }
            /// Sends the next transaction, whole, and adds it to the model of what was sent.
            func sendNext() {
                let lsn = lastLSN + UInt64(sent.count) + 1
                let transaction = KillTests.transaction(lsn: lsn, on: stateAtSend, &random)
                KillTests.apply(transaction, to: &stateAtSend)
                sent.append(transaction)
                send(transaction, commit: true)
            }
            func wait(moreThan count: Int) {
                switch child.waitForLines(moreThan: count) {
                case .lines(let count): acknowledged = count
                case .ended: childDied = true
                case .timedOut(let diagnosis):
                    XCTFail("round \(round): pdb apply hangs: \(diagnosis)")
                    childDied = true
                }
            }
            while acknowledged < target && !childDied {
                while sent.count < acknowledged + window { sendNext() }
                wait(moreThan: acknowledged)
            }
            // The moment of the kill.
            switch random.below(4) {
            case 0:
                break  // At once: right after an acknowledgement, or during startup and recovery.
            case 1:
                // A few more transactions, then kill after a random delay: often inside a commit.
                for _ in 0...random.below(3) { sendNext() }
                usleep(UInt32(random.below(3000)))
            case 2:
                // Half a transaction: operations without their commit line.
                let lsn = lastLSN + UInt64(sent.count) + 1
                send(KillTests.transaction(lsn: lsn, on: stateAtSend, &random), commit: false)
                usleep(UInt32(random.below(1000)))
            default:
                // One more transaction, killed right after its acknowledgement arrives: the line
                // numbered `sent.count` (one line per transaction, in order). Not "one more line
                // than now": the child may acknowledge before this thread counts the lines, and
                // then waits for input while the test waits for a line that never comes.
                sendNext()
                if !childDied { wait(moreThan: sent.count - 1) }
            }
            let status = child.kill()
            if status != SIGKILL { killedEarly += 1 }
            killsDone += 1

            // Every line read is an acknowledgement: the child printed it after its commit returned.
            let lines = child.lines
            var acknowledgedLSNs: [UInt64] = []
            for text in lines {
                let object = try XCTUnwrap(
                    try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                    "round \(round): not a JSON line: \(text)")
                let lsn = try XCTUnwrap(object["committed"] as? Int, "round \(round): unexpected line \(text)")
                acknowledgedLSNs.append(UInt64(lsn))
            }
            let expectedLSNs = (0..<acknowledgedLSNs.count).map { lastLSN + 1 + UInt64($0) }
            XCTAssertEqual(acknowledgedLSNs, expectedLSNs, "round \(round): commits must follow each other")
            XCTAssertLessThanOrEqual(acknowledgedLSNs.count, sent.count, "round \(round): more commits than sent")
            acknowledged = acknowledgedLSNs.count
            acknowledgedTotal += acknowledged
            if status != SIGKILL {
                XCTFail("round \(round): pdb apply ended before the kill (status \(status)): \(child.errorText)")
            }

            // Reopen: recovery, then check, then the content.
            let check = try pdb("check", db, "--json")
            assertExit(check, 0)
            let partitions = try XCTUnwrap(try check.object()["partitions"] as? [[String: Any]])
            let users = try XCTUnwrap(partitions.first { $0["name"] as? String == "users" })
            let tables = try XCTUnwrap(users["tables"] as? [String: Int])
            var found: Model = [:]
            for (table, count) in tables where count > 0 {
                found[table] = try scan(table)
            }
            // Every transaction writes its own LSN under `~seq`, so the content names its commit.
            let recoveredLSN =
                found[KillTests.tables[0]]?[KillTests.sequenceKey].map {
                    UInt64(String(decoding: $0.value, as: UTF8.self)) ?? 0
                }
                ?? lastLSN
            XCTAssertGreaterThanOrEqual(recoveredLSN, lastLSN, "round \(round): the LSN went backwards")
            let commits = Int(recoveredLSN) - Int(lastLSN)
            if commits < acknowledged {
                lost += acknowledged - commits
                XCTFail("round \(round): \(acknowledged) commits acknowledged, \(commits) recovered")
            }
            XCTAssertLessThanOrEqual(commits, sent.count, "round \(round): more commits recovered than sent")
            var expected = model
            for transaction in sent.prefix(max(0, commits)) { KillTests.apply(transaction, to: &expected) }
            expected = expected.filter { !$0.value.isEmpty }
            if found != expected {
                XCTFail(
                    "round \(round): the content at LSN \(recoveredLSN) is not the model's at that commit: "
                        + KillTests.difference(found, expected))
                // Go on from what is on disk, so one failure does not hide the next.
                expected = found
            }
            model = expected
            lastLSN = recoveredLSN
            // One failure is enough to study; later rounds would start from a damaged state.
            if (testRun?.totalFailureCount ?? 0) > 0 { break }
        }
        let seconds = Int(Date().timeIntervalSince(started))
        print(
            "kills: \(killsDone), acknowledged commits lost: \(lost) "
                + "(\(acknowledgedTotal) acknowledged, last LSN \(lastLSN), \(killedEarly) ended before the kill, \(seconds) s)"
        )
        XCTAssertEqual(lost, 0)
    }

    /// The records of `table` in `users`, from `pdb scan --json`.
    func scan(_ table: String) throws -> [[UInt8]: Entry] {
        let result = try pdb("scan", db, "users", table, "--json")
        assertExit(result, 0)
        var records: [[UInt8]: Entry] = [:]
        for object in try result.objects() {
            let key = try XCTUnwrap(KillTests.bytes(object, "key"), "\(object)")
            let value = try XCTUnwrap(KillTests.bytes(object, "value"), "\(object)")
            records[key] = Entry(value: value, owner: object["owner"] as? String ?? "")
        }
        return records
    }

    static func bytes(_ object: [String: Any], _ field: String) -> [UInt8]? {
        if let text = object[field] as? String { return Array(text.utf8) }
        if let base64 = object[field + "_b64"] as? String { return Data(base64Encoded: base64).map { [UInt8]($0) } }
        return nil
    }

    /// A short description of how two models differ, for failure messages.
    static func difference(_ found: Model, _ expected: Model) -> String {
        var notes: [String] = []
        for table in Set(found.keys).union(expected.keys).sorted() {
            let a = found[table] ?? [:]
            let b = expected[table] ?? [:]
            let missing = b.keys.filter { a[$0] == nil }.count
            let extra = a.keys.filter { b[$0] == nil }.count
            let changed = a.keys.filter { b[$0] != nil && a[$0] != b[$0] }.count
            if missing + extra + changed > 0 {
                notes.append("\(table): \(missing) missing, \(extra) unexpected, \(changed) different")
            }
        }
        return notes.joined(separator: "; ")
    }

    // MARK: Workload

    /// A random transaction of 0 to 8 puts and deletes (small, medium and overflow values, text
    /// and binary keys, deletes mostly of keys that exist), then a put of its own LSN under
    /// `~seq`, so that each commit leaves a different content.
    static func transaction(lsn: UInt64, on model: Model, _ random: inout SplitMix64) -> [Operation] {
        var operations: [Operation] = []
        var state = model
        for _ in 0..<random.below(9) {
            let table = tables[random.below(tables.count)]
            let existing = state[table].map { $0.keys.filter { $0 != sequenceKey } } ?? []
            let operation: Operation
            if random.below(100) < 25 {
                let key =
                    !existing.isEmpty && random.below(4) != 0
                    ? existing[random.below(existing.count)] : randomKey(&random)
                operation = .delete(table: table, key: key)
            } else {
                let key =
                    !existing.isEmpty && random.below(3) == 0
                    ? existing[random.below(existing.count)] : randomKey(&random)
                let entry = Entry(value: randomValue(&random), owner: owners[random.below(owners.count)])
                operation = .put(table: table, key: key, entry: entry)
            }
            apply([operation], to: &state)
            operations.append(operation)
        }
        let sequence = Entry(value: Array(String(lsn).utf8), owner: owners[0])
        operations.append(.put(table: tables[0], key: sequenceKey, entry: sequence))
        return operations
    }

    static func randomKey(_ random: inout SplitMix64) -> [UInt8] {
        if random.below(10) == 0 {
            // Binary keys travel as key_b64.
            return (0...random.below(40)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        }
        return Array(String(format: "k%04d", random.below(400)).utf8)
    }

    static func randomValue(_ random: inout SplitMix64) -> [UInt8] {
        let length: Int
        switch random.below(100) {
        case 0..<10: length = 3000 + random.below(20_000)  // Overflow chains.
        case 10..<30: length = 100 + random.below(1200)
        default: length = random.below(100)
        }
        if random.below(2) == 0 {
            let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789 ".utf8)
            return (0..<length).map { _ in alphabet[random.below(alphabet.count)] }
        }
        return (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    }

    static func apply(_ transaction: [Operation], to model: inout Model) {
        for operation in transaction {
            switch operation {
            case .put(let table, let key, let entry): model[table, default: [:]][key] = entry
            case .delete(let table, let key): model[table]?[key] = nil
            }
        }
    }

    /// The `apply` input line of `operation`: text fields when the bytes are ASCII letters and
    /// digits, base64 fields otherwise.
    static func line(_ operation: Operation) -> String {
        func field(_ name: String, _ bytes: [UInt8]) -> String {
            if bytes.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x20 || $0 == 0x7E }
            ) {
                return #""\#(name)":"\#(String(decoding: bytes, as: UTF8.self))""#
            }
            return #""\#(name)_b64":"\#(Data(bytes).base64EncodedString())""#
        }
        switch operation {
        case .put(let table, let key, let entry):
            return
                #"{"op":"put","table":"\#(table)",\#(field("key", key)),\#(field("value", entry.value)),"owner":"\#(entry.owner)"}"#
        case .delete(let table, let key):
            return #"{"op":"del","table":"\#(table)",\#(field("key", key))}"#
        }
    }
}
