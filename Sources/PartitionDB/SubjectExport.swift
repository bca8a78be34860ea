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
