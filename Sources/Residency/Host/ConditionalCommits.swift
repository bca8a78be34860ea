import Foundation
import PartitionDB

/// Conditional writes through a host (spec/replication.md#write-forwarding): the partition's
/// primary runs each in one transaction and answers once it satisfies the commit mode; a
/// replica host sends it there as `pdb apply` lines with checks and returns once its own copy
/// holds what the primary had, committed or not, so a read after the call sees it.
extension ClusterHost: ConditionalCommitting {
    /// Commits `write` where `partition` is written: false when an expectation does not hold.
    /// Throws what the primary refuses, `commitOutcomeUnknown` when the commit mode is not met in
    /// time, and what forwarding throws (`connection`, `forwardedNotApplied`).
    public func commit(_ write: ConditionalWrite, to partition: String) async throws -> Bool {
        guard let primaryID = primary(ofReplica: partition) else {
            try checkServing(partition)
            let lsn = try await pool.runIfActive {
                try LocalCommits.commitNow(write, to: try self.database.partition(partition))
            }
            guard let lsn else { return false }
            try await waitForCommitMode(of: partition, lsn: lsn)
            return true
        }
        let address = configuration.hosts[primaryID].map { "pdb://\($0.address)" } ?? "pdb://\(primaryID)"
        let answer = try await forwardWrite(
            arguments: ["apply", address, partition], input: write.applyLines, partition: partition)
        if answer.status == 0 { return true }
        struct Aborted: Decodable {
            struct Body: Decodable {
                var code: String
                var message: String
            }
            var error: Body
        }
        let firstLine = answer.stdout.split(separator: 0x0A).first.map { Array($0) } ?? []
        guard let aborted = try? JSONDecoder().decode(Aborted.self, from: Data(firstLine)) else {
            let message = String(decoding: answer.stderr + answer.stdout, as: UTF8.self)
            throw ResidencyError.refused(code: "forwarded_write_failed", message: "\(primaryID): \(message)")
        }
        if aborted.error.code == "check_failed" { return false }
        throw ResidencyError.refused(code: aborted.error.code, message: "\(primaryID): \(aborted.error.message)")
    }
}
