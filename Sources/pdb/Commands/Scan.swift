import ArgumentParser
import PartitionDB

/// `pdb scan DIR PARTITION TABLE [--prefix P] [--from K] [--to K] [--reverse] [--limit N]`
struct Scan: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the records of a table in key order, or a range of them.",
        discussion: """
            Keys compare bytewise. --from is inclusive and --to is exclusive; with --prefix as well, \
            the scan covers the keys that satisfy all of them. With --json each record is one line \
            {"op":"put",...} in the format `pdb apply` reads, so \
            `pdb scan --json --with-commit A P T | pdb apply B P` copies a table.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var target: TableArguments

    @Option(help: "Only keys that start with these bytes.")
    var prefix: String?

    @Option(help: "Only keys >= this key (inclusive).")
    var from: String?

    @Option(help: "Only keys < this key (exclusive).")
    var to: String?

    @Flag(help: "Descending key order.")
    var reverse = false

    @Option(help: "Stop after this many records.")
    var limit: Int?

    @Flag(help: "--prefix, --from and --to are base64.")
    var keysB64 = false

    @Flag(help: "With --json, end a complete scan with the line {\"op\":\"commit\"} for `pdb apply`.")
    var withCommit = false

    func validate() throws {
        _ = try range()
        if let limit, limit < 0 { throw ValidationError("--limit must not be negative") }
        if withCommit, !global.json { throw ValidationError("--with-commit needs --json") }
    }

    /// The key range the options describe: the intersection of the prefix's range and [from, to).
    func range() throws -> KeyRange {
        var range = KeyRange.all
        if let prefix { range = KeyRange.prefix(try Parse.bytes(prefix, base64: keysB64, what: "--prefix")) }
        if let from {
            let key = try Parse.bytes(from, base64: keysB64, what: "--from")
            switch range.lower {
            case .inclusive(let bound) where !bound.lexicographicallyPrecedes(key): break
            default: range.lower = .inclusive(key)
            }
        }
        if let to {
            let key = try Parse.bytes(to, base64: keysB64, what: "--to")
            switch range.upper {
            case .exclusive(let bound) where !key.lexicographicallyPrecedes(bound): break
            default: range.upper = .exclusive(key)
            }
        }
        return range
    }

    func execute() throws {
        let range = try range()
        let limit = self.limit ?? Int.max
        var count = 0
        try target.location.withDatabase(readOnly: true) { database, _ in
            try database.partition(target.partition).read { tx in
                guard limit > 0 else {
                    _ = try tx.count(target.table)  // Still report a missing table.
                    return
                }
                try tx.scan(target.table, range: range, reverse: reverse) { record in
                    try show(record)
                    count += 1
                    return count < limit
                }
            }
        }
        if json {
            if withCommit { try output.json(RecordLine(op: "commit")) }
        } else {
            let limited = count == limit && self.limit != nil ? " (limit reached)" : ""
            try output.line("\(counted(count, "record"))\(limited)")
        }
    }

    private func show(_ record: Record) throws {
        if json {
            try output.json(RecordLine(table: target.table, record: record))
        } else {
            let owner = record.owner.map { "  (owner \(Quoting.name($0.rawValue)))" } ?? ""
            try output.line("\(Bytes.display(record.key)) = \(Bytes.display(record.value))\(owner)")
        }
    }
}
