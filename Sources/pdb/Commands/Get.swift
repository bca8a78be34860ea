import ArgumentParser
import PartitionDB

/// `pdb get DIR PARTITION TABLE KEY`
struct Get: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the value stored under a key; exits 1 when there is none.")

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

    func execute() throws {
        let keyBytes = try Parse.bytes(key, base64: keyB64, what: "KEY")
        let record = try Session.withDatabase(directory) { database, _ in
            try database.partition(partition).read { try $0.record(table, keyBytes) }
        }
        guard let record else {
            throw CLIError.notFound("table \(table) of partition \(partition) has no record under that key")
        }
        if json {
            output.json(RecordLine(table: table, record: record))
        } else if let text = Bytes.text(record.value) {
            output.line(text)
        } else {
            output.line(Bytes.base64(record.value))
            output.note("note: the value is not UTF-8 text; it is printed as base64")
        }
    }
}
