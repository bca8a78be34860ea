import Foundation
import PartitionDB

/// A replica host's writes (spec/replication.md#write-forwarding): a write of a partition this
/// host only replicates goes to the partition's primary as the same command line, over a
/// connection with this host's own certificate; the answer comes back once this host's copy
/// holds the commit, so the caller reads its own write here.
extension ClusterHost {
    /// How often a forwarded write looks whether the local copy has reached its commit.
    static let forwardedApplyPoll = Duration.milliseconds(2)

    /// Sends the command line to the primary of `partition` and returns its answer once the
    /// local copy has reached the LSN the primary reports when the command finished, whether it
    /// succeeded or failed (at most `peer_timeout_seconds`). Throws when the primary cannot be
    /// reached or refuses, and `forwardedNotApplied` when the copy does not get there in time
    /// (a write that succeeded is committed on the primary).
    public func forwardWrite(arguments: [String], input: [UInt8], partition: String) async throws -> HostAnswer {
        guard let primaryID = primary(ofReplica: partition), let primary = configuration.hosts[primaryID] else {
            throw ResidencyError.refused(
                code: "not_a_replica", message: "\(configuration.host) does not replicate partition \(partition)")
        }
        let answer = try await HostRequest.send(
            arguments: arguments, input: input, to: primary.address, tls: tls, group: group,
            expected: .host(id: primaryID, region: primary.region), epoch: epoch(of: partition))
        guard let lsn = answer.committedLSN else { return answer }
        do {
            try await waitForCopy(of: partition, toReach: lsn, primary: primaryID)
        } catch ResidencyError.forwardedNotApplied where answer.status != 0 {
            // Nothing of this write to wait for: the caller gets the primary's refusal.
        }
        return answer
    }

    /// Waits until this host's copy of `partition` is at `lsn` or later (at most
    /// `peer_timeout_seconds`), else throws `forwardedNotApplied`.
    func waitForCopy(of partition: String, toReach lsn: UInt64, primary: String) async throws {
        let timeout = Duration.seconds(Int64(configuration.peerTimeoutSeconds))
        let start = ContinuousClock.now
        while try database.partition(partition).lastLSN.rawValue < lsn {
            guard ContinuousClock.now - start < timeout, !stopping.load(ordering: .relaxed) else {
                throw ResidencyError.forwardedNotApplied(
                    partition: partition, primary: primary, lsn: lsn, waitedSeconds: configuration.peerTimeoutSeconds)
            }
            try await Task.sleep(for: Self.forwardedApplyPoll)
        }
    }
}
