import ArgumentParser
import PartitionDB

/// `pdb home get DIR SUBJECT`
struct HomeGet: PDBCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Print a subject's home region; exits 1 when the subject has none.")

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    @Argument(help: "The subject's pseudonymous id.")
    var subject: String

    func validate() throws {
        _ = try Parse.subject(subject)
    }

    func execute() throws {
        let id = try Parse.subject(subject)
        let home = try location.withDatabase(readOnly: true) { _, residency in try residency.home(of: id) }
        guard let home else {
            throw CLIError(
                code: "no_home",
                message: "subject \(Quoting.name(subject)) has no home region; assign one with `pdb home set`")
        }
        if json {
            try output.json(HomeEntry(subject: subject, home: home.name))
        } else {
            try output.line(home.name)
        }
    }
}
