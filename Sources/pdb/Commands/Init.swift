import ArgumentParser
import PartitionDB

/// `pdb init DIR --region R [--page-size N]`
struct Init: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a database for a host of one region, with an empty global partition.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The database directory (created if missing, in an existing parent; must not hold a database).")
    var directory: String

    @Option(help: "The region this host serves, such as eu or us.")
    var region: String

    @Option(help: "Page size of the partitions: a power of two from 4096 to 32768.")
    var pageSize = 4096

    func validate() throws {
        _ = try Parse.region(region)
        guard (4096...32768).contains(pageSize), pageSize & (pageSize - 1) == 0 else {
            throw ValidationError("--page-size must be a power of two from 4096 to 32768")
        }
    }

    struct Report: Encodable {
        var path: String
        var region: String
        var pageSize: Int
        enum CodingKeys: String, CodingKey {
            case path, region
            case pageSize = "page_size"
        }
    }

    func execute() throws {
        var options = Options()
        options.pageSize = pageSize
        let database = try Database.create(at: directory, region: try Parse.region(region), options: options)
        try database.close()
        if json {
            try output.json(Report(path: directory, region: region, pageSize: pageSize))
        } else {
            try output.line("created database \(Quoting.path(directory)) for region \(region) (page size \(pageSize))")
        }
    }
}
