import ArgumentParser
import PartitionDB

/// A `pdb` subcommand: `execute()` does the work and throws on failure; `run()` turns a thrown
/// error into `error: <message>` on stderr (or the JSON error object on stdout) and exit code 1.
protocol PDBCommand: ParsableCommand {
    var global: GlobalOptions { get }
    func execute() throws
}

extension PDBCommand {
    var output: Output { Output.shared }
    var json: Bool { global.json }

    func run() throws {
        defer { Output.shared.flush() }
        do {
            try execute()
        } catch let exit as ExitCode {
            throw exit
        } catch {
            let (code, message) = describe(error)
            if global.json {
                Output.shared.json(ErrorReport(code: code, message: message))
            } else {
                Output.shared.note("error: \(message)")
            }
            throw ExitCode.failure
        }
    }
}
