import ArgumentParser
import PartitionDB

/// `pdb create-partition DIR NAME [--region R]`
struct CreatePartition: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a partition of the host's region.",
        discussion: "A partition of another region is refused by the engine, and nothing is created.")

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    @Argument(help: "The partition's name: letters, digits, _, - and . (not first).")
    var name: String

    @Option(help: "The partition's region; defaults to the host's region.")
    var region: String?

    func validate() throws {
        if let region { _ = try Parse.region(region) }
    }

    struct Report: Encodable {
        var partition: String
        var region: String
    }

    func execute() throws {
        let requested = try region.map { try Parse.region($0) }
        let partition = try location.withDatabase { database, _ in
            try database.createPartition(name, region: requested)
        }
        if json {
            try output.json(Report(partition: partition.name, region: partition.region.name))
        } else {
            try output.line(
                "created partition \(partition.name) (region \(partition.region)) in \(Quoting.path(location.directory))"
            )
        }
    }
}
