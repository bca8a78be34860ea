import ArgumentParser
import Dispatch
import PartitionDB
import Residency

/// `pdb promote pdb://HOST:PORT [PARTITION] [--epoch N]`: makes the host the primary of the
/// partition (or of every partition it replicates) at a higher epoch (spec/cli.md#promote,
/// spec/replication.md#promotion).
struct Promote: HostCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a running replica host the primary of a partition, at a higher epoch.")

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    @Argument(help: "The partition to promote; default: every partition the host replicates.")
    var partition: String?

    @Option(help: "The new epoch; default: one above the newest the host knows. It must be above every host's.")
    var epoch: UInt64?

    var writtenPartition: String? { nil }

    struct Report: Encodable {
        var promotions: [PromotionReport]
    }

    func validate() throws {
        if let epoch, epoch < 2 { throw ValidationError("--epoch must be 2 or more: epoch 1 is the first primary's") }
        if epoch != nil, partition == nil { throw ValidationError("--epoch needs a PARTITION") }
    }

    func execute() throws {
        guard let host = HostSession.current?.host as? ClusterHost else {
            throw CLIError(code: "not_a_host", message: "promote needs a running host: give pdb://HOST:PORT")
        }
        let names =
            partition.map { [$0] }
            ?? host.configuration.partitions.map(\.name).filter { host.primary(ofReplica: $0) != nil }
        guard !names.isEmpty else {
            throw CLIError(
                code: "already_primary", message: "\(host.configuration.host) replicates no partition to promote")
        }
        var reports: [PromotionReport] = []
        for name in names {
            reports.append(try blocking { try await host.promote(partition: name, toEpoch: epoch) })
        }
        if json { return try output.json(Report(promotions: reports)) }
        for report in reports {
            var line =
                "\(report.partition): primary at epoch \(report.epoch) from LSN \(report.firstLSN) (was \(report.previousPrimary)), in \(report.milliseconds) ms"
            let fenced = report.fenced.sorted { $0.key < $1.key }.map { "\($0.key) at LSN \($0.value)" }
            if !fenced.isEmpty { line += "; fenced \(fenced.joined(separator: ", "))" }
            if !report.unreached.isEmpty { line += "; still fencing \(report.unreached.joined(separator: ", "))" }
            try output.line(line)
        }
    }
}
