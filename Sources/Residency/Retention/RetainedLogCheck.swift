import Foundation
import PartitionDB

/// `pdb check`'s look at the retained shipped log of a partition (spec/replication.md#retained-segments):
/// every segment's header, every record's checksum and contents, and that the LSNs follow on
/// from segment to segment. What `pdb serve` repairs by itself on its next start (a torn last
/// record, segments of an earlier partition file, commits the partition lost) is a note; damage
/// that loses retained commits is a problem.
public struct RetainedLogCheck: Sendable, Equatable {
    public struct Problem: Sendable, Equatable {
        public var file: String
        public var message: String
    }

    public var directory: String
    public var segments = 0
    public var bytes = 0
    /// The first and last LSN of the commits kept, when there are any.
    public var firstLSN: UInt64?
    public var lastLSN: UInt64?
    public var problems: [Problem] = []
    public var notes: [Problem] = []

    /// Checks the retained log of `partition` in its database directory; nil when it has none
    /// (the partition was never the primary of a running host).
    public static func check(partition: Partition, databaseDirectory: String) -> RetainedLogCheck? {
        let directory = SegmentFormat.directory(database: databaseDirectory, partition: partition.name)
        let files = SegmentFile.list(directory: directory)
        var report = RetainedLogCheck(directory: directory)
        guard !files.isEmpty else { return SegmentFile.isDirectory(directory) ? report : nil }
        let fileID = partition.fileID
        let partitionLSN = partition.lastLSN.rawValue
        for (index, found) in files.enumerated() {
            let isNewest = index == files.count - 1
            let bytes: [UInt8]
            do {
                let file = try SegmentFile.open(path: found.path, firstLSN: found.firstLSN, readOnly: true)
                bytes = try file.read(at: 0, count: try file.size())
            } catch ResidencyError.retainedLog(_, _, ENOENT) {
                continue  // removed by retention since the listing, on a running host
            } catch {
                report.problems.append(Problem(file: found.path, message: "\(error)"))
                continue
            }
            report.segments += 1
            report.bytes += bytes.count
            let scan = SegmentFormat.scan(bytes)
            guard let header = scan.header, header.firstLSN == found.firstLSN else {
                if isNewest && bytes.count < SegmentFormat.headerBytes {
                    report.notes.append(Problem(file: found.path, message: "a segment cut short while it was created"))
                } else {
                    report.problems.append(
                        Problem(file: found.path, message: "is not a segment (no header, or not the one its name says)")
                    )
                }
                continue
            }
            guard header.fileID == fileID else {
                report.notes.append(
                    Problem(
                        file: found.path,
                        message:
                            "belongs to an earlier file of the partition (compacted or restored); the next `pdb serve` removes it"
                    ))
                continue
            }
            if let last = report.lastLSN, header.firstLSN != last + 1 {
                report.problems.append(
                    Problem(
                        file: found.path,
                        message:
                            "starts at LSN \(header.firstLSN) but the segment before ends at \(last); replicas between catch up by snapshot"
                    ))
            }
            for (record, offset) in scan.records {
                do {
                    _ = try SegmentFormat.changes(
                        ofRecord: Array(bytes[offset..<offset + record.size]), fileID: fileID)
                } catch {
                    report.problems.append(
                        Problem(
                            file: found.path, message: "the record of LSN \(record.lsn) at offset \(offset): \(error)"))
                }
            }
            if let first = scan.records.first, report.firstLSN == nil { report.firstLSN = first.record.lsn }
            if let last = scan.records.last { report.lastLSN = last.record.lsn }
            switch scan.stop {
            case nil:
                break
            case .incomplete? where isNewest,
                .damaged? where isNewest && SegmentFormat.recordIsLast(bytes, at: scan.end):
                report.notes.append(
                    Problem(
                        file: found.path,
                        message:
                            "ends in a record cut short at offset \(scan.end) (a write in progress or cut by a crash); `pdb serve` truncates it"
                    ))
            case .incomplete?, .damaged?:
                let reason: String
                if case .damaged(let why)? = scan.stop { reason = why } else { reason = "a record is cut short" }
                report.problems.append(
                    Problem(
                        file: found.path,
                        message:
                            "at offset \(scan.end): \(reason); the commits after it are not retained (replicas catch up by snapshot)"
                    ))
            case .record?:
                break
            }
        }
        if let last = report.lastLSN, last > partitionLSN {
            report.notes.append(
                Problem(
                    file: directory,
                    message:
                        "holds commits after the partition's LSN \(partitionLSN) (not durable, lost in a crash); `pdb serve` drops them"
                ))
        }
        return report
    }
}
