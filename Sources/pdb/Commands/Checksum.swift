import ArgumentParser
import PartitionDB

/// `pdb checksum DIR PARTITION`
struct Checksum: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a partition's LSN and a checksum of its content, to compare two copies.",
        discussion: """
            The checksum is SHA-256 over every table name, key, owner and value in order \
            (spec/file-format.md#content-checksum): two copies with the same content at the same \
            LSN print the same line, whatever their pages, free space or file id.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    @Argument(help: "The partition.")
    var partition: String

    struct Report: Encodable {
        var partition: String
        var lsn: UInt64
        var tables: Int
        var records: Int
        var sha256: String
    }

    func execute() throws {
        let sum = try location.withBareDatabase(readOnly: true) { database in
            try database.partition(partition).contentChecksum()
        }
        if json {
            try output.json(
                Report(
                    partition: partition, lsn: sum.lsn.rawValue, tables: sum.tables, records: sum.records,
                    sha256: sum.sha256))
        } else {
            try output.line(
                "\(Quoting.name(partition)) at LSN \(sum.lsn): sha256 \(sum.sha256) "
                    + "(\(counted(sum.tables, "table")), \(counted(sum.records, "record")))")
        }
    }
}
