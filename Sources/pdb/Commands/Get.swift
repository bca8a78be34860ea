import ArgumentParser
import PartitionDB

/// `pdb get DIR PARTITION TABLE KEY`
struct Get: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the value stored under a key; exits 1 when there is none.")

    @OptionGroup var global: GlobalOptions

    @OptionGroup var target: TableArguments

    @OptionGroup var key: KeyArgument

    func execute() throws {
        let keyBytes = try key.bytes()
        let record = try target.location.withDatabase(readOnly: true) { database, _ in
            try database.partition(target.partition).read { try $0.record(target.table, keyBytes) }
        }
        guard let record else {
            throw CLIError.notFound(
                "table \(Quoting.name(target.table)) of partition \(Quoting.name(target.partition)) has no record under that key"
            )
        }
        if json {
            try output.json(RecordLine(table: target.table, record: record))
        } else if let text = Bytes.text(record.value) {
            try output.line(text)
        } else {
            try output.line(Bytes.base64(record.value))
            output.note("note: the value is not UTF-8 text; it is printed as base64")
        }
    }
}
