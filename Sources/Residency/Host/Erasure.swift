import Foundation
import PartitionDB

/// A subject's erasure on a running host (spec/cli.md#pdb-erase): on the primary of every
/// partition that holds the subject's records, while it serves. Each partition's records are
/// deleted in a commit of its commit mode, the file is rewritten (compaction, retried while a
/// snapshot being sent holds the old log), and the retained shipped log restarts with the new
/// file: its segments are removed and every replica's stream sends a snapshot of the new file,
/// which replaces the replica's copy and its log.
extension ClusterHost {
    /// How long a rewrite waits for readers (snapshots being sent) to let go of the log.
    static let rewriteWait = Duration.seconds(30)

    public func erase(_ subject: SubjectID) async throws -> ErasureRecord {
        let names = try await pool.runIfActive {
            try self.database.partitionNames().filter { name in
                try !self.database.partition(name).read { tx in try tx.keys(ownedBy: subject) }.isEmpty
            }
        }
        // Refused before anything changes: a partition this host only replicates is erased on
        // its primary.
        for name in names {
            if let primary = primary(ofReplica: name) {
                throw ResidencyError.refused(
                    code: "not_primary",
                    message:
                        "\(configuration.host) replicates partition \(name); erase \(subject.rawValue) on its primary, \(primary)"
                )
            }
            try checkServing(name)
        }
        var erased: [SubjectErasure] = []
        var segments = 0
        for name in names {
            let deleted = try await pool.runIfActive {
                try self.database.partition(name).deleteRecords(ownedBy: subject)
            }
            guard let deleted else { continue }
            try await waitForCommitMode(of: name, lsn: deleted.lsn)
            let compaction = try await rewrite(name)
            segments += SubjectErasureRun.retainedSegments(database: database.path, partition: name)
            if let serving = serving(name) {
                serving.log.restart(afterRewriteOf: try database.partition(name))
            }
            erased.append(
                SubjectErasure(partition: name, lsn: deleted.lsn, records: deleted.records, compaction: compaction))
            logger.info(
                "erased a subject's records", metadata: ["partition": "\(name)", "records": "\(deleted.records)"])
        }
        let done = erased
        let removed = segments
        return try await pool.runIfActive {
            try SubjectErasureRun.record(
                subject, in: self.database, erased: done, segmentsRemoved: removed, now: Date())
        }
    }

    /// Compacts `name`, trying again while readers hold its log (`busy`), for at most
    /// `rewriteWait`.
    private func rewrite(_ name: String) async throws -> CompactionSummary {
        let start = ContinuousClock.now
        while true {
            do {
                return try await pool.runIfActive { try self.database.partition(name).compact() }
            } catch PartitionDBError.busy where ContinuousClock.now - start < Self.rewriteWait {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }
}
