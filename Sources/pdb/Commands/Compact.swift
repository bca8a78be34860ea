import ArgumentParser
import PartitionDB

/// `pdb compact DIR PARTITION`
struct Compact: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rewrite a partition into a new file of only its live pages.")

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    @Argument(help: "The partition.")
    var partition: String

    struct Report: Encodable {
        var partition: String
        var bytesBefore: UInt64
        var bytesAfter: UInt64
        var pagesBefore: Int
        var pagesAfter: Int

        enum CodingKeys: String, CodingKey {
            case partition
            case bytesBefore = "bytes_before"
            case bytesAfter = "bytes_after"
            case pagesBefore = "pages_before"
            case pagesAfter = "pages_after"
        }
    }

    func execute() throws {
        let summary = try location.withDatabase { database, _ in
            try database.partition(partition).compact()
        }
        if json {
            try output.json(
                Report(
                    partition: partition, bytesBefore: summary.bytesBefore, bytesAfter: summary.bytesAfter,
                    pagesBefore: summary.pagesBefore, pagesAfter: summary.pagesAfter))
        } else {
            try output.line(
                "compacted \(Quoting.name(partition)): \(summary.pagesBefore) -> \(summary.pagesAfter) pages, "
                    + "\(summary.bytesBefore) -> \(summary.bytesAfter) bytes")
        }
    }
}
