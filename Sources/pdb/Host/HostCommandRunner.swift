import ArgumentParser
import Dispatch
import Foundation
import PartitionDB
import Residency

/// Runs an operator's command line on this host (`CommandRunning`): parsed by the same commands
/// as on the operator's machine, run against the host's open database with its output captured,
/// so the operator sees exactly what the command prints on a directory (spec/cli.md#running-hosts).
struct HostCommandRunner: CommandRunning {
    func writtenPartition(arguments: [String]) -> String? {
        guard let command = try? PDB.parseAsRoot(arguments) as? any HostCommand,
            command.location.remoteAddress != nil
        else { return nil }
        return command.writtenPartition
    }

    func run(arguments: [String], input: [UInt8], host: ClusterHost) async -> CommandResult {
        // A write of a partition this host replicates goes to its primary
        // (spec/replication.md#write-forwarding).
        if let partition = writtenPartition(arguments: arguments), host.primary(ofReplica: partition) != nil {
            do {
                let answer = try await host.forwardWrite(arguments: arguments, input: input, partition: partition)
                return CommandResult(stdout: answer.stdout, stderr: answer.stderr, status: answer.status)
            } catch {
                return Self.capture { Self.fail(error, json: PDB.wantsJSON(arguments)) }
            }
        }
        if let partition = writtenPartition(arguments: arguments) {
            do { try host.checkServing(partition) } catch {
                return Self.capture { Self.fail(error, json: PDB.wantsJSON(arguments)) }
            }
        }
        // Commands block (commits, fsyncs): on a thread of their own, not the cooperative pool.
        let (result, written) = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: Self.runNow(arguments: arguments, input: input, host: host))
            }
        }
        // A write's answer goes out only once its commit satisfies the partition's commit mode
        // (spec/replication.md#commit-modes); if it does not in time, the answer is that error.
        guard let written else { return result }
        guard result.status == 0 else {
            // A failed write (a check that failed, a refusal) tells a forwarding host how far
            // to wait: its copy then holds what this host saw.
            var failed = result
            failed.committedLSN = written.lsn.rawValue
            return failed
        }
        do {
            try await host.waitForCommitMode(of: written.partition, lsn: written.lsn)
            var done = result
            done.committedLSN = written.lsn.rawValue
            return done
        } catch {
            return Self.capture { Self.fail(error, json: PDB.wantsJSON(arguments)) }
        }
    }

    /// Runs the command line; with the partition a write command wrote and its newest LSN when
    /// it finished, whether it succeeded or not (its own commit's, or a later one's: waiting for
    /// a later one covers it).
    /// A write of a partition this host replicates never gets here: `run` forwards it.
    static func runNow(arguments: [String], input: [UInt8], host: ClusterHost) -> (
        CommandResult, (partition: String, lsn: LSN)?
    ) {
        var written: (partition: String, lsn: LSN)? = nil
        let result = capture {
            HostSession.$current.withValue(HostSession(database: host.database, host: host)) {
                LineReader.$providedInput.withValue(ProvidedInput(input)) {
                    execute(arguments, host: host, written: &written)
                }
            }
        }
        return (result, written)
    }

    /// The output of `body`, captured, with its status.
    private static func capture(_ body: () -> Int32) -> CommandResult {
        let output = Output(capturing: true)
        let status = Output.$capturing.withValue(output) { body() }
        let captured = output.captured
        return CommandResult(stdout: captured.stdout, stderr: captured.stderr, status: UInt32(bitPattern: status))
    }

    private static func execute(
        _ arguments: [String], host: ClusterHost, written: inout (partition: String, lsn: LSN)?
    ) -> Int32 {
        let json = PDB.wantsJSON(arguments)
        do {
            var command = try PDB.parseAsRoot(arguments)
            guard let hostCommand = command as? any HostCommand, hostCommand.location.remoteAddress != nil else {
                let name = arguments.first.map { Quoting.name($0) } ?? "(none)"
                return fail(
                    CLIError(
                        code: "not_on_host",
                        message:
                            "`pdb \(name)` does not run on a running host; run it on the host's data directory while the host is stopped"
                    ), json: json)
            }
            defer {
                if let partition = hostCommand.writtenPartition,
                    let lsn = try? host.database.partition(partition).lastLSN
                {
                    written = (partition, lsn)
                }
            }
            try command.run()
            return 0
        } catch {
            let code = PDB.exitCode(for: error)
            if code == .validationFailure, json {
                try? Output.shared.json(ErrorReport(code: "usage", message: PDB.message(for: error)))
            } else {
                let message = PDB.fullMessage(for: error)
                if !message.isEmpty {
                    if code == .success { try? Output.shared.line(message) } else { Output.shared.note(message) }
                }
            }
            return code.rawValue
        }
    }

    private static func fail(_ error: any Error, json: Bool) -> Int32 {
        // A capture's writes cannot fail.
        try? report(error, json: json)
        return 1
    }
}
