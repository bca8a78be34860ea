import ArgumentParser
import PartitionDB

/// `pdb export DIR|pdb://… SUBJECT`: every record of a subject in every partition of this
/// database, through the owner index (a data subject's access request). Output:
/// spec/cli.md#export
struct Export: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print every record of a subject, in every partition, as apply lines.",
        discussion: """
            For each partition that holds records of the subject, in name order: one \
            {"op":"put",…,"partition":P} line per record (apply's shape, found through the owner \
            index), then {"op":"commit","partition":P,"lsn":L,"records":N}, the commit the \
            partition was read at. Prints nothing for a subject without records here.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    @Argument(help: "The subject's pseudonymous id.")
    var subject: String

    func validate() throws {
        _ = try Parse.subject(subject)
    }

    /// A record line with the partition it came from (apply ignores the extra member).
    struct ExportedRecord: Encodable {
        var line: RecordLine
        var partition: String

        func encode(to encoder: any Encoder) throws {
            try line.encode(to: encoder)
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(partition, forKey: .partition)
        }

        enum Key: String, CodingKey { case partition }
    }

    /// The line that ends a partition's records: apply's commit, with where they were read.
    struct PartitionEnd: Encodable {
        var op = "commit"
        var partition: String
        var lsn: UInt64
        var records: Int
    }

    func execute() throws {
        let id = try Parse.subject(subject)
        let found = try location.withDatabase(readOnly: true) { database, _ in try database.records(ownedBy: id) }
        for partition in found {
            for entry in partition.entries {
                try output.json(
                    ExportedRecord(
                        line: RecordLine(table: entry.table, record: entry.record), partition: partition.partition))
            }
            try output.json(
                PartitionEnd(
                    partition: partition.partition, lsn: partition.lsn.rawValue, records: partition.entries.count))
        }
    }
}
