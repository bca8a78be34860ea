import ArgumentParser
import PartitionDB
import Residency

/// `pdb replication status pdb://HOST:PORT`: the host's partitions, their roles and LSNs, and
/// each replica's connection and lag (spec/cli.md#replication-status).
struct Replication: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show replication on a running host.", subcommands: [ReplicationStatusCommand.self])
}

struct ReplicationStatusCommand: HostCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show each partition's role and LSN and each replica's lag.")

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    var writtenPartition: String? { nil }

    func execute() throws {
        guard let host = HostSession.current?.host as? ClusterHost else {
            throw CLIError(code: "not_a_host", message: "replication status needs a running host: give pdb://HOST:PORT")
        }
        let status = host.status()
        if json { return try output.json(status) }
        for line in Self.lines(of: status) { try output.line(line) }
    }

    /// The status for people: the host, then each partition and its replicas.
    static func lines(of status: ReplicationStatus) -> [String] {
        var lines = ["host \(status.host) (region \(status.region)), \(counted(Int(status.refusals), "refusal"))"]
        for partition in status.partitions {
            var line = "\(partition.name): \(partition.role), epoch \(partition.epoch), LSN \(partition.lastLSN)"
            if let primary = partition.primary { line += ", from \(primary) (\(partition.state ?? "?"))" }
            if let error = partition.lastError { line += ", last error: \(error)" }
            lines.append(line)
            for replica in partition.replicas ?? [] {
                lines.append(
                    "  \(replica.host): \(replica.state), durable LSN \(replica.durableLSN), lag \(replica.lagCommits) commits / \(replica.lagBytes) bytes / \(replica.lagMilliseconds) ms, shipped \(replica.bytesShipped) bytes"
                )
            }
        }
        return lines
    }
}
