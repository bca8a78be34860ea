import ArgumentParser
import Foundation
import PartitionDB

/// `pdb apply DIR PARTITION [--durable|--no-sync]`: JSON lines from stdin, applied in
/// transactions. Input and output lines: spec/cli.md#apply
struct Apply: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply JSON lines from stdin (put, del, check, commit) to a partition in transactions.",
        discussion: """
            Each {"op":"commit"} line commits the operations since the previous transaction ended and \
            prints {"committed":LSN}. A check line ({"op":"check","table":T,"key":K,"value":V}, or \
            without a value: the record must be absent) aborts its transaction unless the record \
            holds exactly that (code check_failed). A line that is invalid or refused aborts its transaction, rolls \
            back all of it, and prints {"aborted":true,"error":{"code":C,"message":M}}; the lines \
            after it, up to and including the next {"op":"commit"} line, belong to the aborted \
            transaction and are discarded without being applied; the next transaction begins after \
            that commit line. (A commit that fails aborts at the commit line: nothing is discarded.) \
            End of input rolls back an open transaction and prints {"rolled_back":N}, or prints \
            nothing more if it comes while discarding. Exits 0 when every transaction committed, \
            else 1.
            """)

    enum DurabilityFlag: String, EnumerableFlag {
        case durable
        case noSync

        static func help(for value: DurabilityFlag) -> ArgumentHelp? {
            switch value {
            case .durable: return "Each commit is on disk before its line prints."
            case .noSync: return "Commit without fsync: a crash may lose the latest commits."
            }
        }
    }

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    @Argument(help: "The partition.")
    var partition: String

    @Flag var durability: DurabilityFlag = .durable

    /// An operation line.
    enum Operation {
        case put(table: String, key: [UInt8], value: [UInt8], owner: SubjectID?)
        case delete(table: String, key: [UInt8])
        /// The transaction goes on only if the record holds `value` (absent when `value` is nil).
        case check(table: String, key: [UInt8], value: [UInt8]?)
        case commit
    }

    /// Input ended inside a transaction; it carries the number of operations rolled back.
    struct EndOfInput: Error {
        var operations: Int
    }

    struct Committed: Encodable { var committed: UInt64 }
    struct RolledBack: Encodable {
        var rolledBack: Int
        enum CodingKeys: String, CodingKey { case rolledBack = "rolled_back" }
    }
    struct Aborted: Encodable {
        var aborted = true
        var error: ErrorReport.Body
    }

    func execute() throws {
        var input = LineReader()
        let mode: Durability = durability == .durable ? .durable : .noSync
        let allCommitted = try location.withDatabase { database, _ in
            let target = try database.partition(partition)
            var allCommitted = true
            // One turn per transaction: it begins at the first line that is not blank.
            while let first = try input.next() {
                // The line being applied; when the transaction aborts, the line that aborted it.
                var current = first
                var discarding = false
                do {
                    let lsn = try target.write(durability: mode) { tx in
                        var operations = 0
                        var line: LineReader.Line? = first
                        while let text = line {
                            current = text
                            switch try Apply.parse(text, number: input.number) {
                            case .commit:
                                return tx.lsn
                            case .put(let table, let key, let value, let owner):
                                try tx.put(table, key, value, owner: owner)
                            case .delete(let table, let key):
                                try tx.delete(table, key)
                            case .check(let table, let key, let expected):
                                try Apply.check(tx, table, key, holds: expected, line: input.number)
                            }
                            operations += 1
                            line = try input.next()
                        }
                        throw EndOfInput(operations: operations)
                    }
                    try output.json(Committed(committed: lsn.rawValue))
                } catch let failure as OutputFailure {
                    throw failure
                } catch let end as EndOfInput {
                    try output.json(RolledBack(rolledBack: end.operations))
                    allCommitted = false
                } catch let error as CLIError where error.code == "io" {
                    // Stdin itself failed: what follows cannot be read, so apply stops here.
                    throw error
                } catch {
                    let (code, message) = describe(error)
                    try output.json(Aborted(error: .init(code: code, message: message)))
                    allCommitted = false
                    // The rest of the aborted transaction, through its commit line, is dropped
                    // unless the abort was at that commit line (the commit itself failed).
                    discarding = !Apply.isCommit(current)
                }
                // A line that cannot be delivered stops apply before it reads another line, so
                // no transaction begins after the last acknowledgement that failed.
                try output.flush()
                if discarding { try Apply.discardThroughCommit(&input) }
            }
            return allCommitted
        }
        if !allCommitted { throw ExitCode.failure }
    }

    /// Throws `check_failed` unless record `key` of `table` holds `expected` (is absent when
    /// `expected` is nil; a missing table holds no record).
    static func check(
        _ tx: WriteTransaction, _ table: String, _ key: [UInt8], holds expected: [UInt8]?, line: Int
    ) throws {
        let current = try tx.hasTable(table) ? tx.get(table, key) : nil
        guard current != expected else { return }
        let record = "table \(Quoting.name(table)) key \(Bytes.text(key).map(Quoting.name) ?? Bytes.base64(key))"
        let state: String
        switch (current, expected) {
        case (nil, _): state = "is absent, not the value the check names"
        case (_, nil): state = "exists; the check wants it absent"
        default: state = "holds another value than the check names"
        }
        throw CLIError(
            code: "check_failed",
            message: "line \(line): \(record) \(state); nothing of the transaction was applied (read the record again)")
    }

    /// Whether `line` is a commit line: one that `parse` reads as `.commit`.
    static func isCommit(_ line: LineReader.Line) -> Bool {
        if case .commit? = try? parse(line, number: 0) { return true }
        return false
    }

    /// Skips the lines left of an aborted transaction, through its `{"op":"commit"}` line or to
    /// the end of input. The skipped lines are not parsed into operations; malformed ones are
    /// skipped like the others, without output.
    static func discardThroughCommit(_ input: inout LineReader) throws {
        while let line = try input.next() {
            if isCommit(line) { return }
        }
    }

    /// The member names apply reads; any other member is ignored (spec/cli.md#input).
    static let fields: Set<String> = ["op", "table", "key", "key_b64", "value", "value_b64", "owner"]

    /// Reads one input line into an operation; throws `bad_input` for anything malformed.
    static func parse(_ input: LineReader.Line, number: Int) throws -> Operation {
        func bad(_ message: String) -> CLIError { CLIError(code: "bad_input", message: "line \(number): \(message)") }
        let members: [StrictJSON.Member]
        switch input {
        case .tooLong(let length):
            throw bad(
                "\(length) bytes, longer than the longest valid operation (\(LineReader.maxLineLength) bytes); "
                    + "it was skipped")
        case .text(let bytes):
            do { members = try StrictJSON.object(bytes) } catch { throw bad(error.message) }
        }
        var line = RecordLine()
        for member in members where fields.contains(member.name) {
            let text: String?
            switch member.value {
            case .string(let string): text = string
            case .null: text = nil
            case .other(let kind): throw bad("field \(member.name) must be a string, not \(kind)")
            }
            switch member.name {
            case "op": line.op = text
            case "table": line.table = text
            case "key": line.key = text
            case "key_b64": line.keyB64 = text
            case "value": line.value = text
            case "value_b64": line.valueB64 = text
            default: line.owner = text
            }
        }
        func bytes(_ plain: String?, _ base64: String?, _ name: String) throws -> [UInt8] {
            switch (plain, base64) {
            case (let plain?, nil): return Array(plain.utf8)
            case (nil, let base64?):
                guard let bytes = Bytes.fromBase64(base64) else { throw bad("\(name)_b64 is not valid base64") }
                return bytes
            case (nil, nil): throw bad("\(line.op ?? "") needs \(name) or \(name)_b64")
            case (_?, _?): throw bad("give \(name) or \(name)_b64, not both")
            }
        }
        func table() throws -> String {
            guard let table = line.table else { throw bad("\(line.op ?? "") needs table") }
            return table
        }
        switch line.op {
        case "put":
            var owner: SubjectID? = nil
            if let name = line.owner {
                do { owner = try SubjectID(name) } catch let error as PartitionDBError { throw bad(error.description) }
            }
            return .put(
                table: try table(), key: try bytes(line.key, line.keyB64, "key"),
                value: try bytes(line.value, line.valueB64, "value"), owner: owner)
        case "del":
            return .delete(table: try table(), key: try bytes(line.key, line.keyB64, "key"))
        case "check":
            let expected =
                line.value == nil && line.valueB64 == nil ? nil : try bytes(line.value, line.valueB64, "value")
            return .check(table: try table(), key: try bytes(line.key, line.keyB64, "key"), value: expected)
        case "commit":
            return .commit
        case nil:
            throw bad("missing op (put, del, check or commit)")
        case let op?:
            throw bad("unknown op \"\(Quoting.name(op))\" (use put, del, check or commit)")
        }
    }
}
