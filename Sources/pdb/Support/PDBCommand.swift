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
        do {
            do {
                try execute()
                try Output.shared.flush()
            } catch let exit as ExitCode {
                try Output.shared.flush()
                throw exit
            } catch let failure as OutputFailure {
                throw failure
            } catch {
                try report(error, json: global.json)
                throw ExitCode.failure
            }
        } catch let failure as OutputFailure {
            // Stdout is gone, so the report goes to stderr whatever the format.
            Output.shared.note("error: \(failure.description)")
            throw ExitCode.failure
        }
    }
}

/// A command's failure as it prints: the JSON error object on stdout with `--json`, else
/// `error: MESSAGE` on stderr.
func report(_ error: any Error, json: Bool) throws {
    let (code, message) = describe(error)
    if json {
        try Output.shared.json(ErrorReport(code: code, message: message))
        try Output.shared.flush()
    } else {
        Output.shared.note("error: \(message)")
    }
}
