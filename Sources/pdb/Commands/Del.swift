import ArgumentParser
import PartitionDB

/// `pdb del DIR PARTITION TABLE KEY`
struct Del: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete the record under a key; exits 1 (and commits nothing) when there is none.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The database directory.")
    var directory: String

    @Argument(help: "The partition.")
    var partition: String

    @Argument(help: "The table.")
    var table: String

    @Argument(help: "The key (UTF-8 text, or base64 with --key-b64).")
    var key: String

    @Flag(help: "KEY is base64.")
    var keyB64 = false

    func validate() throws {
        _ = try Parse.bytes(key, base64: keyB64, what: "KEY")
    }

    struct Report: Encodable {
        var deleted: Bool
        var committed: UInt64
    }

    func execute() throws {
        let keyBytes = try Parse.bytes(key, base64: keyB64, what: "KEY")
        let lsn = try Session.withDatabase(directory) { database, _ in
            try database.partition(partition).write { tx in
                // Throwing rolls the transaction back, so a miss does not spend an LSN.
                guard try tx.delete(table, keyBytes) else {
                    throw CLIError.notFound("table \(table) of partition \(partition) has no record under that key")
                }
                return tx.lsn
            }
        }
        if json {
            output.json(Report(deleted: true, committed: lsn.rawValue))
        } else {
            output.line("deleted; committed at LSN \(lsn)")
        }
    }
}
