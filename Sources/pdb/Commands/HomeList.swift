import ArgumentParser
import PartitionDB

/// `pdb home list DIR`
struct HomeList: PDBCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List every subject and its home region, in subject order.")

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    struct Report: Encodable {
        var homes: [HomeEntry]
    }

    func execute() throws {
        let entries = try location.withDatabase(readOnly: true) { _, residency in try residency.entries() }
        if json {
            try output.json(Report(homes: entries.map { HomeEntry(subject: $0.subject.rawValue, home: $0.home.name) }))
            return
        }
        if entries.isEmpty {
            try output.line("no subjects have a home yet")
            return
        }
        let width = entries.map { $0.subject.rawValue.count }.max() ?? 0
        for entry in entries {
            let padding = String(repeating: " ", count: width - entry.subject.rawValue.count)
            try output.line(
                "\(Quoting.shown(entry.subject.rawValue, limit: SubjectID.maxLength))\(padding)  \(entry.home.name)")
        }
    }
}
