import ArgumentParser
import Foundation
import PartitionDB
import Residency

/// `pdb erase DIR|pdb://… SUBJECT`: a data subject's erasure in this database
/// (spec/cli.md#pdb-erase).
struct Erase: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete every record of a subject and rewrite the files that held them.",
        discussion: """
            Deletes the subject's records in every partition in one commit each, rewrites each \
            such partition (no free page, slack or log is left with their bytes), removes its \
            retained shipped-log segments, and records the erasure in DATA/erasures.log (no \
            personal data: the subject id, the time, the commits). Lists the backups taken before \
            that still hold the subject. On a directory, or on a running host through pdb:// (the \
            primary of the partitions that hold the subject): the rewrite gives each file a new \
            id, and the replicas catch up by snapshot.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    @Argument(help: "The subject's pseudonymous id.")
    var subject: String

    func validate() throws {
        _ = try Parse.subject(subject)
    }

    func execute() throws {
        let id = try Parse.subject(subject)
        let record: ErasureRecord
        if let host = HostSession.current?.host as? ClusterHost {
            // On a running host: its primaries erase while serving; replicas follow by snapshot.
            record = try blocking { try await host.erase(id) }
        } else {
            record = try location.withDatabase { database, _ in try SubjectErasureRun.erase(id, in: database) }
        }
        if json { return try output.json(record) }
        if record.partitions.isEmpty {
            try output.line("\(Quoting.name(subject)) has no records here; the request is recorded in erasures.log")
        }
        for partition in record.partitions {
            try output.line(
                "erased \(counted(partition.records, "record")) of \(Quoting.name(subject)) in \(partition.partition) at LSN \(partition.lsn); rewritten: \(partition.pagesBefore) -> \(partition.pagesAfter) pages"
            )
        }
        if record.retainedSegmentsRemoved > 0 {
            try output.line("removed \(counted(record.retainedSegmentsRemoved, "retained shipped-log segment"))")
        }
        for backup in record.backupsStillHolding {
            try output.line("still holds the subject: backup \(Quoting.path(backup)) (taken before)")
        }
    }
}

// Through `pdb://` the host erases itself, partition by partition on their primary; the command
// line is never forwarded.
extension Erase: HostCommand {
    var writtenPartition: String? { nil }
}
