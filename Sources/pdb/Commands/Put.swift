import ArgumentParser
import PartitionDB

/// `pdb put DIR PARTITION TABLE KEY VALUE [--owner S]`
struct Put: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store a record in one durable transaction, creating the table if needed.",
        discussion: """
            In a regional partition every record needs an --owner whose home region is the \
            partition's region; the engine refuses any other owner and writes nothing. Records of \
            the global partition have no owner.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var target: TableArguments

    @OptionGroup var key: KeyArgument

    @Argument(help: "The value (UTF-8 text, or base64 with --value-b64).")
    var value: String

    @Option(help: "The subject the record is about.")
    var owner: String?

    @Flag(help: "VALUE is base64.")
    var valueB64 = false

    func validate() throws {
        _ = try Parse.bytes(value, base64: valueB64, what: "VALUE")
        if let owner { _ = try Parse.subject(owner) }
    }

    struct Report: Encodable {
        var committed: UInt64
    }

    func execute() throws {
        let keyBytes = try key.bytes()
        let valueBytes = try Parse.bytes(value, base64: valueB64, what: "VALUE")
        let subject = try owner.map { try Parse.subject($0) }
        let lsn = try target.location.withDatabase { database, _ in
            try database.partition(target.partition).write { tx in
                try tx.put(target.table, keyBytes, valueBytes, owner: subject)
                return tx.lsn
            }
        }
        if json {
            try output.json(Report(committed: lsn.rawValue))
        } else {
            try output.line("committed at LSN \(lsn)")
        }
    }
}
