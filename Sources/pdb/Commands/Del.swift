import ArgumentParser
import PartitionDB

/// `pdb del DIR PARTITION TABLE KEY`
struct Del: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete the record under a key; exits 1 (and commits nothing) when there is none.")

    @OptionGroup var global: GlobalOptions

    @OptionGroup var target: TableArguments

    @OptionGroup var key: KeyArgument

    struct Report: Encodable {
        var deleted: Bool
        var committed: UInt64
    }

    func execute() throws {
        let keyBytes = try key.bytes()
        let lsn = try target.location.withDatabase { database, _ in
            try database.partition(target.partition).write { tx in
                // Throwing rolls the transaction back, so a miss does not spend an LSN.
                guard try tx.delete(target.table, keyBytes) else {
                    throw CLIError.notFound(
                        "table \(Quoting.name(target.table)) of partition \(Quoting.name(target.partition)) has no record under that key"
                    )
                }
                return tx.lsn
            }
        }
        if json {
            try output.json(Report(deleted: true, committed: lsn.rawValue))
        } else {
            try output.line("deleted; committed at LSN \(lsn)")
        }
    }
}
