import Foundation
import PartitionDB
import Residency
import Synchronization

/// What `pdb shell` runs: one command line at a time against one database (a directory, or the
/// host's own when it runs for an operator through `pdb://`), read-only. Each command reads in
/// one transaction, so it never shows a torn state. Commands and output: spec/cli.md#pdb-shell.
final class ShellSession {
    struct Command {
        let name: String
        let usage: String
        let summary: String
    }

    static let commands: [Command] = [
        .init(name: "help", usage: "help [COMMAND]", summary: "list the commands, or show one"),
        .init(name: "partitions", usage: "partitions", summary: "the partitions, their regions and LSNs"),
        .init(name: "use", usage: "use PARTITION", summary: "make PARTITION the current partition"),
        .init(name: "tables", usage: "tables", summary: "the current partition's tables and record counts"),
        .init(name: "get", usage: "get TABLE KEY", summary: "one record"),
        .init(
            name: "scan", usage: "scan TABLE [prefix P] [from K] [to K] [reverse] [limit N]",
            summary: "records in key order, a page at a time on a terminal"),
        .init(name: "count", usage: "count TABLE", summary: "how many records TABLE holds"),
        .init(name: "stat", usage: "stat", summary: "pages, free pages, file and log sizes, LSN, epoch"),
        .init(name: "owner", usage: "owner SUBJECT", summary: "every record of SUBJECT in the current partition"),
        .init(name: "home", usage: "home SUBJECT", summary: "SUBJECT's home region in the directory"),
        .init(name: "check", usage: "check", summary: "verify the current partition (pages, checksums, tree)"),
        .init(name: "tree", usage: "tree TABLE", summary: "TABLE's B+tree: its levels, pages, cells and fill"),
        .init(
            name: "replication", usage: "replication",
            summary: "the host's partitions, roles, LSNs and replicas' lag (through pdb://)"),
        .init(
            name: "put", usage: "put TABLE KEY VALUE [owner SUBJECT]",
            summary: "insert or replace a record (--write; a commit of its own outside begin)"),
        .init(name: "del", usage: "del TABLE KEY", summary: "delete a record (--write)"),
        .init(name: "begin", usage: "begin", summary: "open a transaction (--write); the prompt shows *"),
        .init(name: "commit", usage: "commit", summary: "commit the open transaction"),
        .init(name: "rollback", usage: "rollback", summary: "drop the open transaction's changes"),
        .init(name: "quit", usage: "quit", summary: "leave the shell (also exit, or Ctrl-D)"),
    ]

    /// Thrown for a line that cannot run; the shell prints it and goes on.
    struct Problem: Error {
        let message: String
    }

    let database: Database
    /// Whether `put`, `del` and transactions are allowed (`--write`).
    let writable: Bool
    /// The explicit transaction between `begin` and `commit` or `rollback`.
    private(set) var transaction: OpenTransaction?
    /// The partition the table commands work on.
    private(set) var current: String?
    /// Set from a signal handler: the running command stops at its next record.
    let interruption = Interruption()
    /// Rows per page of a scan on a terminal, and what asks whether to go on; nil: no paging.
    var pager: (rows: Int, more: () -> Bool)?
    private let write: (String) throws -> Void

    init(database: Database, writable: Bool = false, write: @escaping (String) throws -> Void) {
        self.database = database
        self.writable = writable
        self.write = write
        let names = (try? database.partitionNames()) ?? []
        current = names.first { $0 != Database.globalPartitionName } ?? names.first
    }

    /// Whether `line` asks to leave.
    static func isQuit(_ line: String) -> Bool {
        ["quit", "exit", ".quit", ".exit"].contains(line.trimmingCharacters(in: .whitespaces))
    }

    /// Runs one line: `COMMAND ARGUMENT… [--json]`. Arguments are separated by spaces; quote
    /// one with "…" to include spaces.
    func run(_ line: String) throws {
        var words = try Self.words(line)
        guard !words.isEmpty else { return }
        let json = words.contains("--json")
        words.removeAll { $0 == "--json" }
        let name = words.removeFirst()
        interruption.clear()
        switch name {
        case "help": try help(words.first)
        case "partitions": try partitions(json: json)
        case "use": try use(words)
        case "tables": try tables(json: json)
        case "get": try get(words, json: json)
        case "scan": try scan(words, json: json)
        case "count": try count(words, json: json)
        case "stat": try stat(json: json)
        case "owner": try owner(words, json: json)
        case "home": try home(words, json: json)
        case "check": try check(json: json)
        case "tree": try tree(words, json: json)
        case "replication": try replication(json: json)
        case "put": try put(words)
        case "del": try del(words)
        case "begin": try begin()
        case "commit": try commit(json: json)
        case "rollback": try rollback()
        default:
            throw Problem(message: "unknown command \(Quoting.name(name)); `help` lists the commands")
        }
    }

    // MARK: Commands

    private func help(_ name: String?) throws {
        if let name {
            guard let command = Self.commands.first(where: { $0.name == name }) else {
                throw Problem(message: "no command \(Quoting.name(name)); `help` lists the commands")
            }
            return try write("\(command.usage)\n  \(command.summary)")
        }
        let width = Self.commands.map(\.usage.count).max() ?? 0
        for command in Self.commands {
            try write(command.usage.padding(toLength: width + 2, withPad: " ", startingAt: 0) + command.summary)
        }
        try write("Add --json to a command for one JSON object per line.")
    }

    private func partitions(json: Bool) throws {
        var rows: [[String]] = []
        for name in try database.partitionNames() {
            let partition = try database.partition(name)
            let lsn = partition.lastLSN.rawValue
            if json {
                try emit(["partition": name, "region": partition.region.name, "lsn": lsn])
            } else {
                rows.append([name == current ? "* " + name : "  " + name, partition.region.name, "LSN \(lsn)"])
            }
        }
        if !json { try table(rows) }
    }

    private func use(_ words: [String]) throws {
        guard words.count == 1 else { throw Problem(message: "usage: use PARTITION") }
        guard transaction == nil else {
            throw Problem(message: "a transaction of \(current ?? "") is open; commit or rollback first")
        }
        guard try database.partitionNames().contains(words[0]) else {
            throw Problem(message: "there is no partition \(Quoting.name(words[0])); `partitions` lists them")
        }
        current = words[0]
    }

    private func tables(json: Bool) throws {
        let info = try partition().info()
        var rows: [[String]] = []
        for (name, count) in info.tables.sorted(by: { $0.key < $1.key }) {
            if json {
                try emit(["table": name, "records": count])
            } else {
                rows.append([name, counted(count, "record")])
            }
        }
        if json { return }
        if rows.isEmpty { return try write("(no tables in \(info.name))") }
        try table(rows)
    }

    private func get(_ words: [String], json: Bool) throws {
        guard words.count == 2 else { throw Problem(message: "usage: get TABLE KEY") }
        let key = Array(words[1].utf8)
        let record = try reading { tx -> Record? in
            guard try tx.hasTable(words[0]) else { return nil }
            return try tx.record(words[0], key)
        }
        guard let record else {
            throw Problem(message: "no record \(Quoting.name(words[1])) in table \(Quoting.name(words[0]))")
        }
        try show(table: words[0], record, json: json)
    }

    private func scan(_ words: [String], json: Bool) throws {
        guard let table = words.first else {
            throw Problem(message: "usage: scan TABLE [prefix P] [from K] [to K] [reverse] [limit N]")
        }
        var range = KeyRange.all
        var reverse = false
        var limit = Int.max
        var rest = words.dropFirst()
        while let option = rest.popFirst() {
            switch option {
            case "reverse": reverse = true
            case "prefix", "from", "to", "limit":
                guard let value = rest.popFirst() else { throw Problem(message: "\(option) needs a value") }
                switch option {
                case "prefix": range = .prefix(Array(value.utf8))
                case "from": range = KeyRange(lower: .inclusive(Array(value.utf8)), upper: range.upper)
                case "to": range = KeyRange(lower: range.lower, upper: .inclusive(Array(value.utf8)))
                default:
                    guard let number = Int(value), number >= 0 else {
                        throw Problem(message: "limit needs a number, not \(Quoting.name(value))")
                    }
                    limit = number
                }
            default:
                throw Problem(message: "unknown scan option \(Quoting.name(option)) (prefix, from, to, reverse, limit)")
            }
        }
        var shown = 0
        var stopped = false
        let partition = try partition()
        try reading { [self] tx in
            guard try tx.hasTable(table) else {
                throw Problem(message: "no table \(Quoting.name(table)) in \(partition.name)")
            }
            try tx.scan(table, range: range, reverse: reverse) { record in
                if shown >= limit { return false }
                if interruption.isSet {
                    stopped = true
                    return false
                }
                try show(table: table, record, json: json)
                shown += 1
                if let pager, !json, shown % pager.rows == 0, !pager.more() {
                    stopped = true
                    return false
                }
                return true
            }
        }
        if !json {
            try write(stopped ? "(stopped after \(counted(shown, "record")))" : "(\(counted(shown, "record")))")
        }
    }

    private func count(_ words: [String], json: Bool) throws {
        guard words.count == 1 else { throw Problem(message: "usage: count TABLE") }
        let count = try reading { tx -> Int? in try tx.hasTable(words[0]) ? tx.count(words[0]) : nil }
        guard let count else { throw Problem(message: "no table \(Quoting.name(words[0]))") }
        if json { try emit(["table": words[0], "records": count]) } else { try write("\(count)") }
    }

    private func stat(json: Bool) throws {
        let partition = try partition()
        let info = try partition.info()
        let fileBytes = Self.size(of: partition.path)
        let logBytes = Self.size(of: partition.path + "-log")
        if json {
            return try emit([
                "partition": info.name, "region": info.region.name, "page_size": info.pageSize,
                "pages": info.pageCount, "free_pages": info.freePages, "file_bytes": fileBytes,
                "log_bytes": logBytes, "log_frames": info.logFrames, "lsn": info.lastLSN.rawValue,
                "epoch": partition.epoch, "tables": info.tables.count,
            ])
        }
        try table([
            ["partition", "\(info.name) (\(info.region))"], ["pages", "\(info.pageCount) of \(info.pageSize) bytes"],
            ["free pages", "\(info.freePages)"], ["file", Self.humanized(fileBytes)],
            ["log", "\(Self.humanized(logBytes)), \(counted(info.logFrames, "frame"))"],
            ["LSN", "\(info.lastLSN)"], ["epoch", "\(partition.epoch)"], ["tables", "\(info.tables.count)"],
        ])
    }

    private func owner(_ words: [String], json: Bool) throws {
        guard words.count == 1 else { throw Problem(message: "usage: owner SUBJECT") }
        let subject = try subjectID(words[0])
        let found = try partition().records(ownedBy: subject)
        for entry in found.entries {
            if interruption.isSet { break }
            try show(table: entry.table, entry.record, json: json)
        }
        if !json { try write("(\(counted(found.entries.count, "record")) at LSN \(found.lsn))") }
    }

    private func home(_ words: [String], json: Bool) throws {
        guard words.count == 1 else { throw Problem(message: "usage: home SUBJECT") }
        let subject = try subjectID(words[0])
        let home = try ResidencyDirectory(database: database).home(of: subject)
        if json { return try emit(["subject": subject.rawValue, "home": home?.name as Any? ?? NSNull()]) }
        try write(home?.name ?? "(no home)")
    }

    private func check(json: Bool) throws {
        let partition = try partition()
        let report = try partition.check()
        if json {
            return try emit([
                "partition": partition.name, "clean": report.isClean, "problems": report.problems.map(\.description),
            ])
        }
        for problem in report.problems { try write("problem: \(problem)") }
        try write(
            report.isClean
                ? "\(partition.name): clean (\(counted(report.pageCount, "page")), \(report.freePages) free)"
                : "\(partition.name): \(counted(report.problems.count, "problem"))")
    }

    private func tree(_ words: [String], json: Bool) throws {
        guard words.count == 1 else { throw Problem(message: "usage: tree TABLE") }
        let levels = try reading { tx -> [TreeLevel]? in try tx.hasTable(words[0]) ? tx.treeLevels(words[0]) : nil }
        guard let levels else { throw Problem(message: "no table \(Quoting.name(words[0]))") }
        if json {
            for level in levels {
                try emit([
                    "depth": level.depth, "pages": level.pages, "cells": level.cells, "leaves": level.leaves,
                    "used_bytes": level.usedBytes, "fill": (level.fill * 1000).rounded() / 1000,
                ])
            }
            return
        }
        var rows = [["level", "pages", "cells", "fill", "kind"]]
        for level in levels {
            rows.append([
                "\(level.depth)", "\(level.pages)", "\(level.cells)", String(format: "%.0f%%", level.fill * 100),
                level.leaves ? "leaves" : "branches",
            ])
        }
        try table(rows)
        try write("depth \(levels.count)")
    }

    private func replication(json: Bool) throws {
        guard let host = HostSession.current?.host as? ClusterHost else {
            throw Problem(message: "replication needs a running host: start the shell with pdb://HOST:PORT")
        }
        let status = host.status()
        if json {
            let data = try JSONEncoder.sorted.encode(status)
            return try write(String(decoding: data, as: UTF8.self))
        }
        for line in ReplicationStatusCommand.lines(of: status) { try write(line) }
    }

    private func put(_ words: [String]) throws {
        guard words.count == 3 || (words.count == 5 && words[3] == "owner") else {
            throw Problem(message: "usage: put TABLE KEY VALUE [owner SUBJECT]")
        }
        let owner = words.count == 5 ? try subjectID(words[4]) : nil
        let (table, key, value) = (words[0], Array(words[1].utf8), Array(words[2].utf8))
        try changing { tx in try tx.put(table, key, value, owner: owner) }
    }

    private func del(_ words: [String]) throws {
        guard words.count == 2 else { throw Problem(message: "usage: del TABLE KEY") }
        let (table, key) = (words[0], Array(words[1].utf8))
        var found = false
        try changing { tx in found = try tx.hasTable(table) && tx.delete(table, key) }
        if !found { try write("(no such record)") }
    }

    private func begin() throws {
        try requireWritable()
        guard transaction == nil else { throw Problem(message: "a transaction is open already") }
        transaction = try OpenTransaction(try partition())
    }

    private func commit(json: Bool) throws {
        guard let open = transaction else { throw Problem(message: "no transaction is open; `begin` opens one") }
        transaction = nil
        let lsn = try open.commit()
        if json { return try emit(["committed": lsn.rawValue]) }
        try write("committed \(counted(open.writes, "change")) at LSN \(lsn)")
    }

    private func rollback() throws {
        guard let open = transaction else { throw Problem(message: "no transaction is open") }
        transaction = nil
        open.rollback()
        try write("rolled back \(counted(open.writes, "change"))")
    }

    /// Ends the session: an open transaction is rolled back, and says so.
    func end() {
        guard transaction != nil else { return }
        try? rollback()
    }

    // MARK: Support

    private func requireWritable() throws {
        guard writable else {
            throw Problem(message: "the shell is read-only; start it with --write to change records")
        }
    }

    /// `body` in the open transaction, or in a durable commit of its own.
    private func changing(_ body: @escaping (WriteTransaction) throws -> Void) throws {
        try requireWritable()
        if let transaction { return try transaction.run(write: true, body) }
        let lsn = try partition().write(durability: .durable) { tx in
            try body(tx)
            return tx.lsn
        }
        try write("committed at LSN \(lsn)")
    }

    /// `body` in the open transaction (which sees its own changes), or in a read transaction.
    private func reading<T>(_ body: @escaping (ReadTransaction) throws -> T) throws -> T {
        if let transaction { return try transaction.run(write: false) { try body($0) } }
        return try partition().read(body)
    }

    /// The current partition's tables, for completion.
    func tableNames() -> [String] {
        (try? partition().read { tx in try tx.tables() }) ?? []
    }

    /// Up to 200 keys of `table` that start with `prefix` and are text, for completion.
    func keys(of table: String, prefix: String) -> [String] {
        var keys: [String] = []
        _ = try? partition().read { tx in
            guard try tx.hasTable(table) else { return }
            try tx.scan(table, range: .prefix(Array(prefix.utf8))) { record in
                if let text = String(validating: record.key, as: UTF8.self), !text.contains(" ") { keys.append(text) }
                return keys.count < 200
            }
        }
        return keys
    }

    private func partition() throws -> Partition {
        guard let current else { throw Problem(message: "no partition; `use PARTITION` first") }
        return try database.partition(current)
    }

    private func subjectID(_ text: String) throws -> SubjectID {
        do { return try SubjectID(text) } catch { throw Problem(message: "\(error)") }
    }

    /// One record: `TABLE KEY = VALUE [owner S]` for people (bytes that are not printable in
    /// hex), or apply's JSON line.
    private func show(table: String, _ record: Record, json: Bool) throws {
        if json {
            let data = try JSONEncoder.sorted.encode(RecordLine(table: table, record: record))
            return try write(String(decoding: data, as: UTF8.self))
        }
        let owner = record.owner.map { "  [owner \($0.rawValue)]" } ?? ""
        try write("\(Self.printable(record.key)) = \(Self.printable(record.value))\(owner)")
    }

    private func emit(_ object: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        try write(String(decoding: data, as: UTF8.self))
    }

    /// Rows with their columns aligned.
    private func table(_ rows: [[String]]) throws {
        let columns = rows.map(\.count).max() ?? 0
        let widths = (0..<columns).map { column in rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
        for row in rows {
            let cells = row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index] + 2, withPad: " ", startingAt: 0)
            }
            try write(cells.joined())
        }
    }

    /// Text when every byte is printable UTF-8, else `0x` and hex.
    static func printable(_ bytes: [UInt8]) -> String {
        if let text = String(validating: bytes, as: UTF8.self),
            text.unicodeScalars.allSatisfy({ !$0.properties.generalCategory.isControlOrFormat })
        {
            return text
        }
        return "0x" + bytes.map { String(format: "%02x", $0) }.joined()
    }

    static func humanized(_ bytes: UInt64) -> String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) bytes" : String(format: "%.1f %@", value, units[unit])
    }

    private static func size(of path: String) -> UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value ?? 0
    }

    /// The words of a line: split at spaces, "…" keeps spaces (and \" a quote) in one word.
    static func words(_ line: String) throws -> [String] {
        var words: [String] = []
        var word = ""
        var inQuotes = false
        var escaped = false
        var started = false
        for character in line {
            if escaped {
                word.append(character)
                escaped = false
            } else if character == "\\" && inQuotes {
                escaped = true
            } else if character == "\"" {
                inQuotes.toggle()
                started = true
            } else if character == " " && !inQuotes {
                if started || !word.isEmpty { words.append(word) }
                word = ""
                started = false
            } else {
                word.append(character)
            }
        }
        if inQuotes { throw Problem(message: "a quote is not closed") }
        if started || !word.isEmpty { words.append(word) }
        return words
    }
}

/// Ctrl-C, as a flag the running command looks at between records. There is one per process,
/// since a signal handler sets it (an atomic store is safe there).
final class Interruption: Sendable {
    private static let flag = Atomic<Bool>(false)
    var isSet: Bool { Self.flag.load(ordering: .relaxed) }
    func clear() { Self.flag.store(false, ordering: .relaxed) }
    /// Whether it was set, clearing it.
    func take() -> Bool { Self.flag.exchange(false, ordering: .relaxed) }

    /// From now on SIGINT sets the flag instead of ending the process.
    static func catchInterrupts() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in Interruption.flag.store(true, ordering: .relaxed) }
        sigemptyset(&action.sa_mask)
        action.sa_flags = SA_RESTART
        sigaction(SIGINT, &action, nil)
        // A parent may have started this process with SIGINT blocked.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
}

extension Unicode.GeneralCategory {
    fileprivate var isControlOrFormat: Bool {
        switch self {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .unassigned: return true
        default: return false
        }
    }
}

extension JSONEncoder {
    fileprivate static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
