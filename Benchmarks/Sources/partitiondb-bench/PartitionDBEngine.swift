import PartitionDB

/// PartitionDB: a database of region `eu`, records in its `global` partition (whose records have
/// no owner, so no residency resolver is involved), every commit `.durable`.
final class PartitionDBEngine: Engine {
    static let table = "bench"
    let workload: Workload
    let directory: String
    let database: Database
    let partition: Partition

    init(directory: String, workload: Workload) throws {
        self.workload = workload
        self.directory = directory
        database = try Database.create(at: directory, region: try Region("eu"))
        partition = try database.globalPartition()
        // Created up front (not timed), as the SQL engine's table and LMDB's database are.
        _ = try partition.write(durability: .durable) { tx in try tx.createTable(PartitionDBEngine.table) }
    }

    /// Keys and values are written into one buffer each and passed as buffers, as the LMDB
    /// engine does with its `MDB_val`s.
    func insert(_ records: Range<Int>) throws {
        let workload = self.workload
        let key = UnsafeMutableRawPointer.allocate(byteCount: Workload.keySize, alignment: 8)
        let value = UnsafeMutableRawPointer.allocate(byteCount: Workload.valueSize, alignment: 8)
        defer {
            key.deallocate()
            value.deallocate()
        }
        let keyBuffer = UnsafeRawBufferPointer(start: key, count: Workload.keySize)
        let valueBuffer = UnsafeRawBufferPointer(start: value, count: Workload.valueSize)
        try partition.write(durability: .durable) { tx in
            for index in records {
                workload.writeKey(index, to: key)
                workload.writeValue(forKey: key, to: value)
                try tx.put(PartitionDBEngine.table, keyBuffer, valueBuffer)
            }
        }
    }

    func count() throws -> Int {
        try partition.read { tx in try tx.count(PartitionDBEngine.table) }
    }

    func makeReader() throws -> any Reader {
        PartitionDBReader(partition: partition, workload: workload)
    }

    func remove(_ records: Range<Int>) throws -> Int {
        let workload = self.workload
        let key = UnsafeMutableRawPointer.allocate(byteCount: Workload.keySize, alignment: 8)
        defer { key.deallocate() }
        let keyBuffer = UnsafeRawBufferPointer(start: key, count: Workload.keySize)
        return try partition.write(durability: .durable) { tx in
            var removed = 0
            for index in records {
                workload.writeKey(index, to: key)
                if try tx.delete(PartitionDBEngine.table, keyBuffer) { removed += 1 }
            }
            return removed
        }
    }

    func compact() throws -> String {
        _ = try partition.compact()
        return directory
    }

    func close() throws {
        try database.close()
    }
}

/// Reads of one thread: one `Partition.read` per call, since read transactions run concurrently.
/// Keys are written into one buffer per reader, as the LMDB reader does with its `MDB_val`.
final class PartitionDBReader: Reader, @unchecked Sendable {
    let partition: Partition
    let workload: Workload
    let key: UnsafeMutableRawPointer
    /// The previous key of a range read (the cursor lends a key only inside `withCurrent`), in a
    /// buffer of the largest key size, as the SQLite reader keeps it.
    let previous: UnsafeMutableRawPointer

    init(partition: Partition, workload: Workload) {
        self.partition = partition
        self.workload = workload
        key = .allocate(byteCount: Workload.keySize, alignment: 8)
        previous = .allocate(byteCount: WriteTransaction.maxKeySize, alignment: 8)
    }

    deinit {
        key.deallocate()
        previous.deallocate()
    }

    func read(_ records: Range<Int>) throws -> ReadTally {
        let workload = self.workload
        let key = UnsafeRawBufferPointer(start: self.key, count: Workload.keySize)
        return try partition.read { tx in
            var tally = ReadTally()
            for index in records {
                workload.writeKey(index, to: self.key)
                tally.reads += 1
                // The value is read in place (no copy), as an LMDB reader does with MDB_val.
                try tx.withValue(PartitionDBEngine.table, key) { value in
                    guard let value else {
                        tally.missing += 1
                        return
                    }
                    tally.entries += 1
                    if !workload.matches(key: key, value: value) { tally.mismatches += 1 }
                }
            }
            return tally
        }
    }

    func readRanges(_ records: Range<Int>, length: Int) throws -> ReadTally {
        let workload = self.workload
        return try partition.read { tx in
            var tally = ReadTally()
            let cursor = try tx.cursor(PartitionDBEngine.table)
            let key = UnsafeRawBufferPointer(start: self.key, count: Workload.keySize)
            for index in records {
                tally.reads += 1
                workload.writeKey(index, to: self.key)
                try cursor.seek(key)
                var previousCount = 0
                for position in 0..<length {
                    if position > 0 { try cursor.next() }
                    guard cursor.isValid else {
                        if position == 0 { tally.missing += 1 }
                        break
                    }
                    try cursor.withCurrent { key, value in
                        tally.countRangeEntry(
                            position, seeking: index, key: key, value: value,
                            previous: UnsafeRawBufferPointer(start: self.previous, count: previousCount),
                            workload: workload)
                        previousCount = min(key.count, WriteTransaction.maxKeySize)
                        if previousCount > 0 {
                            self.previous.copyMemory(from: key.baseAddress!, byteCount: previousCount)
                        }
                    }
                }
            }
            return tally
        }
    }

    func close() {}
}
