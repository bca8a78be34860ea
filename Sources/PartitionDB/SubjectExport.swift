/// A subject's records in one partition, read in one transaction: what a data subject's access
/// request (GDPR article 15) gets from this database (spec/cli.md#export).
public struct SubjectRecords: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        public var table: String
        public var record: Record
    }

    public let partition: String
    /// The commit the records were read at.
    public let lsn: LSN
    /// In the owner index's order: by table (in the order the tables were made), then by key.
    public let entries: [Entry]
}

extension Partition {
    /// Every record owned by `subject`, found through the owner index (no scan), in one read
    /// transaction.
    public func records(ownedBy subject: SubjectID) throws -> SubjectRecords {
        try read { tx in
            let entries = try tx.keys(ownedBy: subject).map { table, key -> SubjectRecords.Entry in
                guard let value = try tx.get(table, key) else {
                    throw PartitionDBError.corruptPage(
                        file: path, page: 0,
                        reason: "the owner index names a record of table \(Quoting.name(table)) that is not there")
                }
                return SubjectRecords.Entry(table: table, record: Record(key: key, value: value, owner: subject))
            }
            return SubjectRecords(partition: name, lsn: tx.lsn, entries: entries)
        }
    }
}

extension Database {
    /// The subject's records in every partition of this database that holds any, in partition
    /// name order, each partition read in a transaction of its own (so each at its own LSN).
    public func records(ownedBy subject: SubjectID) throws -> [SubjectRecords] {
        try partitionNames().compactMap { name in
            let found = try partition(name).records(ownedBy: subject)
            return found.entries.isEmpty ? nil : found
        }
    }
}

/// What `Partition.erase(subject:)` did in one partition.
public struct SubjectErasure: Equatable, Sendable {
    public let partition: String
    /// The commit that deleted the records.
    public let lsn: LSN
    public let records: Int
    /// The rewrite that left no page, free page or log of the partition holding them.
    public let compaction: CompactionSummary

    public init(partition: String, lsn: LSN, records: Int, compaction: CompactionSummary) {
        self.partition = partition
        self.lsn = lsn
        self.records = records
        self.compaction = compaction
    }
}

extension Partition {
    /// Deletes every record owned by `subject` in one durable commit: its LSN and how many
    /// records, or nil when the subject has none here (nothing is written). The deleted bytes
    /// stay in free pages and the log until `compact()` rewrites the file (`erase`).
    public func deleteRecords(ownedBy subject: SubjectID) throws -> (lsn: LSN, records: Int)? {
        let owned = try read { tx in try tx.keys(ownedBy: subject) }
        guard !owned.isEmpty else { return nil }
        let lsn = try write(durability: .durable) { tx in
            for (table, key) in owned { try tx.delete(table, key) }
            return tx.lsn
        }
        return (lsn, owned.count)
    }

    /// Deletes every record owned by `subject` (`deleteRecords`), then rewrites the partition
    /// (`compact()`): the new file holds only live records in fresh pages, the old file with
    /// its free pages and slack is removed, and the log starts empty, so no byte of the deleted
    /// records is left in this partition's files (guarantee 7). Nil when the subject has no
    /// records here. Throws `busy` when readers hold log frames: the records are deleted then,
    /// and `compact()` must still rewrite the file.
    public func erase(subject: SubjectID) throws -> SubjectErasure? {
        guard let deleted = try deleteRecords(ownedBy: subject) else { return nil }
        return SubjectErasure(partition: name, lsn: deleted.lsn, records: deleted.records, compaction: try compact())
    }
}
