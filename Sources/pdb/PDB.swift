import ArgumentParser
import Foundation

/// The `pdb` command line: one subcommand per file in `Commands/`. Output formats and exit codes:
/// spec/cli.md.
@main
struct PDB: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pdb",
        abstract: "Inspect and change a PartitionDB database from the shell.",
        discussion: """
            Every command takes the database directory first. Add --json for machine-readable output \
            (described in spec/cli.md). Exit codes: 0 success, 1 failure, 64 usage error.
            """,
        subcommands: [
            Init.self, CreatePartition.self, Info.self, Check.self, Home.self, Get.self, Put.self, Del.self,
            Scan.self, Apply.self, Compact.self, Backup.self, Restore.self, Checksum.self, Serve.self,
            Replication.self, Promote.self, Cluster.self, Cert.self, Keys.self, Export.self, Erase.self, Audit.self,
            Shell.self,
        ]
    )

    /// Parses and runs like `ParsableCommand.main()`, except that a usage error of a `--json`
    /// invocation is reported as a JSON error object on stdout, so scripts parse one format.
    static func main() {
        // Before anything is opened: a closed 0, 1 or 2 would be reused by the first file the
        // engine opens (the database's LOCK), and our output would be written into it.
        StandardDescriptors.ensureOpen()
        // A reader that went away must show up as EPIPE on the write, which `Output` reports,
        // not as a silent death by SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        let arguments = Array(CommandLine.arguments.dropFirst())
        do {
            try RawArguments.checkUTF8()
            var command = try parseAsRoot(arguments)
            // pdb://HOST:PORT: the command runs on that host (spec/cli.md#running-hosts).
            // (`shell` on a terminal or reading lines sends each line itself.)
            if let remote = command as? any HostCommand, remote.location.remoteAddress != nil,
                (command as? Shell)?.runsLinesRemotely != true
            {
                try? Output.shared.flush()
                Foundation.exit(
                    try RemoteClient.run(arguments: arguments, location: remote.location, readsInput: remote is Apply))
            }
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure, wantsJSON(arguments) {
                try? Output.shared.json(ErrorReport(code: "usage", message: message(for: error)))
                try? Output.shared.flush()
                Foundation.exit(code.rawValue)
            }
            try? Output.shared.flush()
            exit(withError: error)
        }
    }

    /// Whether `--json` appears among the options (before a `--` that ends them).
    static func wantsJSON(_ arguments: [String]) -> Bool {
        for argument in arguments {
            if argument == "--" { return false }
            if argument == "--json" { return true }
        }
        return false
    }
}
