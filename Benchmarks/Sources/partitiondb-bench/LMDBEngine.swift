import CLMDB

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// LMDB through its C API, with its default (fully synchronous) commits, a 64 GiB map, and
/// MDB_NOTLS so each reader thread owns its read transaction.
final class LMDBEngine: Engine {
    static let mapSize = 64 << 30
    let workload: Workload
    let directory: String
    let environment: OpaquePointer
    var database: MDB_dbi = 0
    let key: UnsafeMutableRawPointer
    let value: UnsafeMutableRawPointer

    init(directory: String, workload: Workload) throws {
        self.workload = workload
        self.directory = directory
        try makeDirectory(directory)
        var environment: OpaquePointer? = nil
        try LMDBEngine.check(mdb_env_create(&environment), "creating the environment")
        self.environment = environment!
        try LMDBEngine.check(mdb_env_set_mapsize(self.environment, LMDBEngine.mapSize), "setting the map size")
        try LMDBEngine.check(
            mdb_env_open(self.environment, directory, UInt32(MDB_NOTLS), 0o644), "opening \(directory)")
        key = .allocate(byteCount: Workload.keySize, alignment: 8)
        value = .allocate(byteCount: Workload.valueSize, alignment: 8)
        try write { transaction in
            try LMDBEngine.check(mdb_dbi_open(transaction, nil, 0, &database), "opening the database")
        }
    }

    deinit {
        key.deallocate()
        value.deallocate()
    }

    static func check(_ code: Int32, _ operation: String) throws {
        guard code == 0 else {
            throw BenchError.engine(
                engine: "LMDB", operation: operation, detail: "error \(code): \(String(cString: mdb_strerror(code)))")
        }
    }

    /// Runs `body` in a write transaction and commits it (durably: default flags), or aborts it if
    /// `body` throws.
    private func write<T>(_ body: (OpaquePointer) throws -> T) throws -> T {
        var transaction: OpaquePointer? = nil
        try LMDBEngine.check(mdb_txn_begin(environment, nil, 0, &transaction), "beginning a write transaction")
        let result: T
        do {
            result = try body(transaction!)
        } catch {
            mdb_txn_abort(transaction)
            throw error
        }
        try LMDBEngine.check(mdb_txn_commit(transaction), "committing")
        return result
    }

    func insert(_ records: Range<Int>) throws {
        try write { transaction in
            var keyValue = MDB_val(mv_size: Workload.keySize, mv_data: key)
            var valueValue = MDB_val(mv_size: Workload.valueSize, mv_data: value)
            for index in records {
                workload.writeKey(index, to: key)
                workload.writeValue(forKey: key, to: value)
                try LMDBEngine.check(mdb_put(transaction, database, &keyValue, &valueValue, 0), "putting a record")
            }
        }
    }

    func count() throws -> Int {
        try LMDBReader.reading(environment) { transaction in
            var stat = MDB_stat()
            try LMDBEngine.check(mdb_stat(transaction, database, &stat), "reading the statistics")
            return stat.ms_entries
        }
    }

    func makeReader() throws -> any Reader {
        LMDBReader(environment: environment, database: database, workload: workload)
    }

    func remove(_ records: Range<Int>) throws -> Int {
        try write { transaction in
            var removed = 0
            var keyValue = MDB_val(mv_size: Workload.keySize, mv_data: key)
            for index in records {
                workload.writeKey(index, to: key)
                let code = mdb_del(transaction, database, &keyValue, nil)
                if code == MDB_NOTFOUND { continue }
                try LMDBEngine.check(code, "deleting a record")
                removed += 1
            }
            return removed
        }
    }

    /// LMDB never shrinks its file; its compaction is a compacting copy (`mdb_env_copy2` with
    /// MDB_CP_COMPACT) into a new directory, whose size is what counts.
    func compact() throws -> String {
        let copy = directory + "-compacted"
        try makeDirectory(copy)
        try LMDBEngine.check(mdb_env_copy2(environment, copy, UInt32(MDB_CP_COMPACT)), "copying to \(copy)")
        return copy
    }

    func close() throws {
        mdb_dbi_close(environment, database)
        mdb_env_close(environment)
    }
}

/// Reads of one thread, each call one read-only transaction.
final class LMDBReader: Reader, @unchecked Sendable {
    let environment: OpaquePointer
    let database: MDB_dbi
    let workload: Workload
    let key: UnsafeMutableRawPointer

    init(environment: OpaquePointer, database: MDB_dbi, workload: Workload) {
        self.environment = environment
        self.database = database
        self.workload = workload
        key = .allocate(byteCount: Workload.keySize, alignment: 8)
    }

    deinit { key.deallocate() }

    static func reading<T>(_ environment: OpaquePointer, _ body: (OpaquePointer) throws -> T) throws -> T {
        var transaction: OpaquePointer? = nil
        try LMDBEngine.check(
            mdb_txn_begin(environment, nil, UInt32(MDB_RDONLY), &transaction), "beginning a read transaction")
        defer { mdb_txn_abort(transaction) }
        return try body(transaction!)
    }

    func read(_ records: Range<Int>) throws -> ReadTally {
        try LMDBReader.reading(environment) { transaction in
            var tally = ReadTally()
            var keyValue = MDB_val(mv_size: Workload.keySize, mv_data: key)
            var found = MDB_val()
            for index in records {
                workload.writeKey(index, to: key)
                tally.reads += 1
                let code = mdb_get(transaction, database, &keyValue, &found)
                if code == MDB_NOTFOUND {
                    tally.missing += 1
                    continue
                }
                try LMDBEngine.check(code, "getting a record")
                tally.entries += 1
                let value = UnsafeRawBufferPointer(start: found.mv_data, count: found.mv_size)
                let key = UnsafeRawBufferPointer(start: key, count: Workload.keySize)
                if !workload.matches(key: key, value: value) { tally.mismatches += 1 }
            }
            return tally
        }
    }

    func readRanges(_ records: Range<Int>, length: Int) throws -> ReadTally {
        try LMDBReader.reading(environment) { transaction in
            var cursor: OpaquePointer? = nil
            try LMDBEngine.check(mdb_cursor_open(transaction, database, &cursor), "opening a cursor")
            defer { mdb_cursor_close(cursor) }
            var tally = ReadTally()
            for index in records {
                workload.writeKey(index, to: key)
                tally.reads += 1
                var foundKey = MDB_val(mv_size: Workload.keySize, mv_data: key)
                var foundValue = MDB_val()
                // Keys and values point into the map, valid for the whole transaction.
                var previous = UnsafeRawBufferPointer(start: nil, count: 0)
                for position in 0..<length {
                    let code = mdb_cursor_get(cursor, &foundKey, &foundValue, position == 0 ? MDB_SET_RANGE : MDB_NEXT)
                    if code == MDB_NOTFOUND {
                        if position == 0 { tally.missing += 1 }
                        break
                    }
                    try LMDBEngine.check(code, "moving a cursor")
                    let key = UnsafeRawBufferPointer(start: foundKey.mv_data, count: foundKey.mv_size)
                    tally.countRangeEntry(
                        position, seeking: index, key: key,
                        value: UnsafeRawBufferPointer(start: foundValue.mv_data, count: foundValue.mv_size),
                        previous: previous, workload: workload)
                    previous = key
                }
            }
            return tally
        }
    }

    func close() {}
}
