/// A partition's content at one commit, summed up so two copies can be compared: the primary and
/// a replica, a partition and its restored backup, a partition before and after compaction.
/// Encoding: spec/file-format.md#content-checksum
public struct ContentChecksum: Sendable, Equatable {
    /// The commit the checksum is of.
    public var lsn: LSN
    public var tables: Int
    public var records: Int
    /// SHA-256 of every table name, key, owner and value in order, as 64 lowercase hex digits.
    /// Independent of the layout: pages, free space and file id do not enter it.
    public var sha256: String
}

extension Partition {
    /// The checksum of the newest commit's content, read on one snapshot while writers go on.
    public func contentChecksum() throws -> ContentChecksum {
        try read { tx in
            var hash = SHA256()
            var records = 0
            // Table names in byte order, as keys are: the order never depends on the locale.
            let tables = try tx.tables().sorted { compareBytes(Array($0.utf8), Array($1.utf8)) < 0 }
            for table in tables {
                let name = Array(table.utf8)
                hash.update(u32: UInt32(name.count))
                hash.update(name)
                hash.update(u64: UInt64(try tx.count(table)))
                try tx.scan(table) { record in
                    let owner = record.owner.map { Array($0.rawValue.utf8) } ?? []
                    hash.update(u32: UInt32(record.key.count))
                    hash.update(record.key)
                    hash.update(u32: UInt32(owner.count))
                    hash.update(owner)
                    hash.update(u64: UInt64(record.value.count))
                    hash.update(record.value)
                    records += 1
                    return true
                }
            }
            return ContentChecksum(lsn: tx.lsn, tables: tables.count, records: records, sha256: hash.finalHex())
        }
    }
}
