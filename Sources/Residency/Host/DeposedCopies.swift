import Foundation
import PartitionDB

/// Copies of a partition kept before a rejoin replaced them (spec/replication.md#rejoin): a
/// deposed primary's copy holds commits the new epoch's primary never had; before its copy is
/// replaced by a snapshot, the whole copy is saved as an engine backup file in `DATA/deposed/`,
/// named for the commits it alone has. `pdb restore FILE --to DIR` makes it a database an
/// operator reads with `pdb`; nothing applies those commits anywhere.
enum DeposedCopies {
    static func directory(database: String) -> String { database + "/deposed" }

    /// `NAME.epoch-E.lsn-FIRST-LAST.backup`: the copy was at LSN `LAST` of epoch `E`, and the new
    /// primary's history has that epoch only up to `FIRST − 1`.
    static func fileName(partition: String, _ cut: ReplicationStatus.Cut) -> String {
        "\(partition).epoch-\(cut.epoch).lsn-\(cut.fromLSN)-\(cut.toLSN).backup"
    }

    /// Saves `partition` (at epoch `epoch`, LSN beyond `commonLSN`) before it is replaced.
    static func keep(_ partition: Partition, database: String, commonLSN: UInt64) throws -> ReplicationStatus.Cut {
        let last = partition.lastLSN.rawValue
        let cut = ReplicationStatus.Cut(
            epoch: partition.epoch, fromLSN: commonLSN + 1, toLSN: last, commits: last - commonLSN, file: "")
        let folder = directory(database: database)
        let path = folder + "/" + fileName(partition: partition.name, cut)
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            _ = try partition.backup(to: path, replacing: true)
        } catch let error as PartitionDBError {
            throw ResidencyError.engine(error)
        } catch {
            throw ResidencyError.termFile(path: folder, reason: "cannot be created (\(error.localizedDescription))")
        }
        var kept = cut
        kept.file = path
        return kept
    }

    /// The copies kept of `partition`, oldest epoch first.
    static func list(database: String, partition: String) -> [ReplicationStatus.Cut] {
        let folder = directory(database: database)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        let prefix = partition + ".epoch-"
        var cuts: [ReplicationStatus.Cut] = []
        for name in names where name.hasPrefix(prefix) && name.hasSuffix(".backup") {
            let middle = name.dropFirst(prefix.count).dropLast(".backup".count)
            let parts = middle.split(separator: ".lsn-", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, let epoch = UInt64(parts[0]) else { continue }
            let range = parts[1].split(separator: "-")
            guard range.count == 2, let first = UInt64(range[0]), let last = UInt64(range[1]), first <= last else {
                continue
            }
            cuts.append(
                .init(epoch: epoch, fromLSN: first, toLSN: last, commits: last - first + 1, file: folder + "/" + name))
        }
        return cuts.sorted { ($0.epoch, $0.fromLSN) < ($1.epoch, $1.fromLSN) }
    }
}
