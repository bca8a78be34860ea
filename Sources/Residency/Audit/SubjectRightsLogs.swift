import Foundation
import PartitionDB

/// One erasure (spec/cli.md#erase), as `DATA/erasures.log` keeps it: no personal data, only the
/// subject's pseudonymous id, when, and per partition the commit that deleted its records, how
/// many, and the rewrite that removed their bytes.
public struct ErasureRecord: Codable, Equatable, Sendable {
    public struct Partition: Codable, Equatable, Sendable {
        public var partition: String
        public var lsn: UInt64
        public var records: Int
        public var pagesBefore: Int
        public var pagesAfter: Int

        public init(_ erasure: SubjectErasure) {
            partition = erasure.partition
            lsn = erasure.lsn.rawValue
            records = erasure.records
            pagesBefore = erasure.compaction.pagesBefore
            pagesAfter = erasure.compaction.pagesAfter
        }

        enum CodingKeys: String, CodingKey {
            case partition, lsn, records
            case pagesBefore = "pages_before"
            case pagesAfter = "pages_after"
        }
    }

    public var version = 1
    public var subject: String
    /// Seconds since 1970 UTC.
    public var time: Int64
    public var partitions: [Partition]
    /// Retained shipped-log segments removed (they held the records' commits).
    public var retainedSegmentsRemoved: Int
    /// Backups taken of those partitions before the erasure (from `backups.log`), which still
    /// hold the subject's records.
    public var backupsStillHolding: [String]

    public init(
        subject: String, time: Int64, partitions: [Partition], retainedSegmentsRemoved: Int,
        backupsStillHolding: [String]
    ) {
        self.subject = subject
        self.time = time
        self.partitions = partitions
        self.retainedSegmentsRemoved = retainedSegmentsRemoved
        self.backupsStillHolding = backupsStillHolding
    }

    enum CodingKeys: String, CodingKey {
        case version = "v"
        case subject, time, partitions
        case retainedSegmentsRemoved = "retained_segments_removed"
        case backupsStillHolding = "backups_still_holding"
    }
}

/// One backup file written by `pdb backup`, as `DATA/backups.log` keeps it, so that an erasure
/// can name the backups that still hold what it erased.
public struct BackupRecord: Codable, Equatable, Sendable {
    public var version = 1
    public var partition: String
    /// The backup file's absolute path.
    public var file: String
    public var lsn: UInt64
    public var time: Int64

    public init(partition: String, file: String, lsn: UInt64, time: Int64) {
        self.partition = partition
        self.file = file
        self.lsn = lsn
        self.time = time
    }

    enum CodingKeys: String, CodingKey {
        case version = "v"
        case partition, file, lsn, time
    }
}

/// A log of JSON lines in the database directory, appended and synced one line at a time
/// (`erasures.log`, `backups.log`). A line that does not decode is refused with the file and
/// the line's number.
public struct SubjectRightsLog<Entry: Codable & Sendable>: Sendable {
    public let path: String

    public static func erasures(_ database: Database) -> SubjectRightsLog<ErasureRecord> {
        .init(path: database.path + "/erasures.log")
    }

    public static func backups(_ database: Database) -> SubjectRightsLog<BackupRecord> {
        .init(path: database.path + "/backups.log")
    }

    /// Appends `entry` as one line and syncs the file (and, when it is new, the directory).
    public func append(_ entry: Entry) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let line = try encoder.encode(entry) + Data([0x0A])
        let manager = FileManager.default
        let created = !manager.fileExists(atPath: path)
        if created, !manager.createFile(atPath: path, contents: nil) {
            throw ResidencyError.rightsLog(path: path, reason: "cannot be created")
        }
        do {
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            try handle.seekToEnd()
            try handle.write(contentsOf: line)
            try handle.synchronize()
            if created {
                let folder = try FileHandle(
                    forReadingFrom: URL(fileURLWithPath: (path as NSString).deletingLastPathComponent))
                defer { try? folder.close() }
                try folder.synchronize()
            }
        } catch let error as ResidencyError {
            throw error
        } catch {
            throw ResidencyError.rightsLog(path: path, reason: error.localizedDescription)
        }
    }

    /// Every entry, oldest first; none when the file does not exist.
    public func entries() throws -> [Entry] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ResidencyError.rightsLog(path: path, reason: "cannot be read")
        }
        let decoder = JSONDecoder()
        var entries: [Entry] = []
        for (index, line) in data.split(separator: 0x0A).enumerated() {
            do {
                entries.append(try decoder.decode(Entry.self, from: Data(line)))
            } catch {
                throw ResidencyError.rightsLog(
                    path: path, reason: "line \(index + 1) is not a valid entry; repair or move the file")
            }
        }
        return entries
    }
}

/// A data subject's erasure (GDPR article 17) in one database: the records deleted and their
/// bytes rewritten away in every partition (`Partition.erase(subject:)`), the retained
/// shipped-log segments of those partitions removed (they hold the deleting commit's
/// predecessors; replicas catch up by snapshot, since the rewrite gave each file a new id), and
/// the erasure appended to `erasures.log` with the backups that still hold the subject.
public enum SubjectErasureRun {
    /// The erasure in a database this process owns (a stopped host's directory).
    public static func erase(_ subject: SubjectID, in database: Database, now: Date = Date()) throws -> ErasureRecord {
        var erased: [SubjectErasure] = []
        var segments = 0
        for name in try database.partitionNames() {
            guard let erasure = try database.partition(name).erase(subject: subject) else { continue }
            erased.append(erasure)
            segments += try removeRetainedSegments(database: database.path, partition: name)
        }
        return try record(subject, in: database, erased: erased, segmentsRemoved: segments, now: now)
    }

    /// Appends the erasure of `subject` (its partitions done) to `erasures.log`, with the
    /// backups of those partitions that still exist; returns it.
    static func record(
        _ subject: SubjectID, in database: Database, erased: [SubjectErasure], segmentsRemoved: Int, now: Date
    ) throws -> ErasureRecord {
        let partitions = Set(erased.map(\.partition))
        let backups = try SubjectRightsLog<BackupRecord>.backups(database).entries()
            .filter { partitions.contains($0.partition) && FileManager.default.fileExists(atPath: $0.file) }
            .map(\.file)
        let record = ErasureRecord(
            subject: subject.rawValue, time: Int64(now.timeIntervalSince1970.rounded(.down)),
            partitions: erased.map(ErasureRecord.Partition.init), retainedSegmentsRemoved: segmentsRemoved,
            backupsStillHolding: Array(Set(backups)).sorted())
        try SubjectRightsLog<ErasureRecord>.erasures(database).append(record)
        return record
    }

    /// How many retained segments `partition` has.
    static func retainedSegments(database: String, partition: String) -> Int {
        let folder = SegmentFormat.directory(database: database, partition: partition)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { $0.hasSuffix(SegmentFormat.suffix) }.count
    }

    /// Removes every retained segment of `partition`; how many there were.
    static func removeRetainedSegments(database: String, partition: String) throws -> Int {
        let folder = SegmentFormat.directory(database: database, partition: partition)
        let manager = FileManager.default
        guard let names = try? manager.contentsOfDirectory(atPath: folder) else { return 0 }
        var removed = 0
        for name in names where name.hasSuffix(SegmentFormat.suffix) {
            do {
                try manager.removeItem(atPath: folder + "/" + name)
                removed += 1
            } catch {
                throw ResidencyError.rightsLog(
                    path: folder + "/" + name, reason: "cannot be removed (\(error.localizedDescription))")
            }
        }
        return removed
    }
}
