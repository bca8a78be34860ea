import ArgumentParser
import PartitionDB
import Residency

/// `pdb audit DIR|pdb://…`: the residency audit (spec/cli.md#audit). Exits 1 when it finds a
/// violation.
struct Audit: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Check that every record lives in its subject's home region, and the directory holds no personal data.",
        discussion: """
            Checks every record of every regional partition against its owner's home in the \
            directory, that no partition of another region is here, and that the directory holds \
            only subject ids, homes and public keys. Prints counts per partition and every \
            violation with its key; exits 1 when there is one.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    struct Report: Encodable {
        var region: String
        var partitions: [ResidencyAudit.PartitionSummary]
        var directory: Directory
        var violations: [ResidencyAudit.Violation]
        var clean: Bool

        struct Directory: Encodable {
            var homes: Int
            var publishedKeys: Int
            enum CodingKeys: String, CodingKey {
                case homes
                case publishedKeys = "published_keys"
            }
        }
    }

    func execute() throws {
        let (region, audit) = try location.withDatabase(readOnly: true) { database, residency in
            (database.region.name, try ResidencyAudit.run(database, directory: residency))
        }
        if json {
            try output.json(
                Report(
                    region: region, partitions: audit.partitions,
                    directory: .init(homes: audit.homes, publishedKeys: audit.publishedKeys),
                    violations: audit.violations, clean: audit.isClean))
        } else {
            for partition in audit.partitions {
                try output.line(
                    "\(partition.partition) (\(partition.region)) at LSN \(partition.lsn): \(counted(partition.records, "record")) of \(counted(partition.subjects, "subject"))"
                )
            }
            try output.line(
                "global: \(counted(audit.homes, "home")), \(counted(audit.publishedKeys, "published key"))")
            for violation in audit.violations { try output.line("violation \(violation.kind): \(violation.message)") }
            try output.line(
                audit.isClean
                    ? "clean: every record is in its subject's home region (\(region))"
                    : "\(counted(audit.violations.count, "violation"))")
        }
        if !audit.isClean { throw ExitCode.failure }
    }
}
