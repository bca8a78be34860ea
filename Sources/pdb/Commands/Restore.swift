import ArgumentParser
import PartitionDB

/// `pdb restore DIR FILE [--as NAME] [--replace]`
struct Restore: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore a backup file as a partition of this database.",
        discussion: """
            The backup must be of the host's region (or the global partition). An existing \
            partition is overwritten only with --replace.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    @Argument(help: "The backup file.")
    var file: String

    @Option(name: .customLong("as"), help: "Restore under this partition name (default: the backed-up name).")
    var name: String?

    @Flag(
        name: [.customLong("replace"), .customLong("force")],
        help: "Overwrite an existing partition of that name (it must not be open; --force is the same).")
    var replace = false

    struct Report: Encodable {
        var partition: String
        var pages: Int
        var lsn: UInt64
    }

    func execute() throws {
        // Without the residency directory: restoring over `global` needs it closed.
        let summary = try location.withBareDatabase { database in
            try database.restore(from: file, as: name, replace: replace)
        }
        if json {
            try output.json(Report(partition: summary.partition, pages: summary.pages, lsn: summary.lsn.rawValue))
        } else {
            try output.line("restored partition \(summary.partition) at LSN \(summary.lsn): \(summary.pages) pages")
        }
    }
}
