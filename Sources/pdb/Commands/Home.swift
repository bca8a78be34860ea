import ArgumentParser

/// `pdb home set|get|list`: the residency directory.
struct Home: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read and assign subjects' home regions in the residency directory.",
        subcommands: [HomeSet.self, HomeGet.self, HomeList.self])
}

/// One directory entry, as `home` prints it with `--json`.
struct HomeEntry: Encodable {
    var subject: String
    var home: String
}
