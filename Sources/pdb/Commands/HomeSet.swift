import ArgumentParser
import PartitionDB

/// `pdb home set DIR SUBJECT REGION`
struct HomeSet: PDBCommand {
    static let configuration = CommandConfiguration(
        commandName: "set",
        abstract: "Assign a subject its home region (once: a different home is refused).")

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    @Argument(help: "The subject's pseudonymous id.")
    var subject: String

    @Argument(help: "The home region, such as eu.")
    var region: String

    func validate() throws {
        _ = try Parse.subject(subject)
        _ = try Parse.region(region)
    }

    struct Report: Encodable {
        var subject: String
        var home: String
        var created: Bool
    }

    func execute() throws {
        let id = try Parse.subject(subject)
        let home = try Parse.region(region)
        let created = try location.withDatabase { _, residency in
            try residency.assignHome(id, to: home)
        }
        if json {
            try output.json(Report(subject: subject, home: home.name, created: created))
        } else if created {
            try output.line("subject \(Quoting.name(subject)) now lives in region \(home)")
        } else {
            try output.line("subject \(Quoting.name(subject)) already lives in region \(home); nothing changed")
        }
    }
}
