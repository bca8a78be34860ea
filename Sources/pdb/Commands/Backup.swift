import ArgumentParser
import Foundation
import PartitionDB
import Residency

/// `pdb backup DIR PARTITION FILE`
struct Backup: PDBCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a consistent, compressed copy of a partition to a file.")

    @OptionGroup var global: GlobalOptions

    @OptionGroup var location: DatabaseArgument

    @Argument(help: "The partition.")
    var partition: String

    @Argument(help: "The backup file to write, outside the database directory; it must not exist (see --force).")
    var file: String

    @Flag(help: "Replace FILE if it is an existing regular file (never a symlink, device or database file).")
    var force = false

    struct Report: Encodable {
        var partition: String
        var file: String
        var pages: Int
        var bytes: UInt64
        var lsn: UInt64
    }

    func execute() throws {
        let summary = try location.withDatabase { database, _ in
            let summary = try database.partition(partition).backup(to: file, replacing: force)
            // Kept so that an erasure can name the backups that still hold what it erased.
            let absolute = URL(fileURLWithPath: file).standardizedFileURL.path
            try SubjectRightsLog<BackupRecord>.backups(database).append(
                BackupRecord(
                    partition: partition, file: absolute, lsn: summary.lsn.rawValue,
                    time: Int64(Date().timeIntervalSince1970.rounded(.down))))
            return summary
        }
        if json {
            try output.json(
                Report(
                    partition: partition, file: file, pages: summary.pages, bytes: summary.bytes,
                    lsn: summary.lsn.rawValue))
        } else {
            try output.line(
                "backed up \(Quoting.name(partition)) at LSN \(summary.lsn) to \(Quoting.path(file)): \(summary.pages) pages, \(summary.bytes) bytes"
            )
        }
    }
}
