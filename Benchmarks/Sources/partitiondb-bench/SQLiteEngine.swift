import CSQLite

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// SQLite through its C API: WAL mode with `synchronous=FULL` (each commit fsyncs the WAL), one
/// `WITHOUT ROWID` table keyed by a BLOB, statements prepared once and reused, blobs bound
/// without copies. Cache size and everything else are SQLite's defaults.
final class SQLiteEngine: Engine {
    let workload: Workload
    let directory: String
    let path: String
    let connection: SQLiteConnection
    let begin: SQLiteStatement
    let commit: SQLiteStatement
    let insertRecord: SQLiteStatement
    let deleteRecord: SQLiteStatement
    let countRecords: SQLiteStatement
    /// Scratch for one key and one value, filled before each bind.
    let key: UnsafeMutableRawPointer
    let value: UnsafeMutableRawPointer

    init(directory: String, workload: Workload) throws {
        self.workload = workload
        self.directory = directory
        path = directory + "/bench.sqlite"
        try makeDirectory(directory)
        connection = try SQLiteConnection(path: path)
        try connection.expect("PRAGMA journal_mode=WAL", returns: "wal")
        try connection.execute("PRAGMA synchronous=FULL")
        try connection.expect("PRAGMA synchronous", returns: "2")
        try connection.execute("CREATE TABLE bench (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID")
        begin = try connection.prepare("BEGIN IMMEDIATE")
        commit = try connection.prepare("COMMIT")
        // OR REPLACE: a put in LMDB and PartitionDB replaces an existing record too.
        insertRecord = try connection.prepare("INSERT OR REPLACE INTO bench (key, value) VALUES (?1, ?2)")
        deleteRecord = try connection.prepare("DELETE FROM bench WHERE key = ?1")
        countRecords = try connection.prepare("SELECT count(*) FROM bench")
        key = .allocate(byteCount: Workload.keySize, alignment: 8)
        value = .allocate(byteCount: Workload.valueSize, alignment: 8)
    }

    deinit {
        key.deallocate()
        value.deallocate()
    }

    /// Runs `body` between `BEGIN IMMEDIATE` and `COMMIT`, rolling back if it throws.
    private func transaction<T>(_ body: () throws -> T) throws -> T {
        try begin.run()
        do {
            let result = try body()
            try commit.run()
            return result
        } catch {
            try? connection.execute("ROLLBACK")
            throw error
        }
    }

    func insert(_ records: Range<Int>) throws {
        try transaction {
            for index in records {
                workload.writeKey(index, to: key)
                workload.writeValue(forKey: key, to: value)
                insertRecord.bindBlob(1, key, Workload.keySize)
                insertRecord.bindBlob(2, value, Workload.valueSize)
                try insertRecord.run()
            }
        }
    }

    func count() throws -> Int {
        guard try countRecords.step() else {
            throw connection.error(SQLITE_DONE, "count(*) returned no row")
        }
        let count = countRecords.columnInt(0)
        countRecords.reset()
        return count
    }

    func makeReader() throws -> any Reader {
        try SQLiteReader(path: path, workload: workload)
    }

    func remove(_ records: Range<Int>) throws -> Int {
        try transaction {
            var removed = 0
            for index in records {
                workload.writeKey(index, to: key)
                deleteRecord.bindBlob(1, key, Workload.keySize)
                try deleteRecord.run()
                removed += connection.changes
            }
            return removed
        }
    }

    /// VACUUM rewrites the database through the WAL; the checkpoint then moves it into the main
    /// file and truncates the WAL to zero, so the files hold only the compacted database.
    func compact() throws -> String {
        try connection.execute("VACUUM")
        try connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return directory
    }

    func close() throws {
        for statement in [begin, commit, insertRecord, deleteRecord, countRecords] { statement.finalize() }
        try connection.close()
    }
}

/// Reads of one thread on a connection of its own, each call one read transaction.
final class SQLiteReader: Reader, @unchecked Sendable {
    let workload: Workload
    let connection: SQLiteConnection
    let begin: SQLiteStatement
    let commit: SQLiteStatement
    let selectValue: SQLiteStatement
    let selectRange: SQLiteStatement
    let key: UnsafeMutableRawPointer
    /// The previous key of a range read: a column's bytes are only valid until the next step.
    let previous: UnsafeMutableRawPointer
    static let maxKeySize = 64

    init(path: String, workload: Workload) throws {
        self.workload = workload
        connection = try SQLiteConnection(path: path)
        begin = try connection.prepare("BEGIN")
        commit = try connection.prepare("COMMIT")
        selectValue = try connection.prepare("SELECT value FROM bench WHERE key = ?1")
        selectRange = try connection.prepare("SELECT key, value FROM bench WHERE key >= ?1 ORDER BY key LIMIT ?2")
        key = .allocate(byteCount: Workload.keySize, alignment: 8)
        previous = .allocate(byteCount: SQLiteReader.maxKeySize, alignment: 8)
    }

    deinit {
        key.deallocate()
        previous.deallocate()
    }

    private func transaction<T>(_ body: () throws -> T) throws -> T {
        try begin.run()
        do {
            let result = try body()
            try commit.run()
            return result
        } catch {
            try? connection.execute("ROLLBACK")
            throw error
        }
    }

    func read(_ records: Range<Int>) throws -> ReadTally {
        try transaction {
            var tally = ReadTally()
            for index in records {
                workload.writeKey(index, to: key)
                tally.reads += 1
                selectValue.bindBlob(1, key, Workload.keySize)
                if try selectValue.step() {
                    tally.entries += 1
                    let value = selectValue.columnBlob(0)
                    let found = UnsafeRawBufferPointer(start: key, count: Workload.keySize)
                    if !workload.matches(key: found, value: value) { tally.mismatches += 1 }
                } else {
                    tally.missing += 1
                }
                selectValue.reset()
            }
            return tally
        }
    }

    func readRanges(_ records: Range<Int>, length: Int) throws -> ReadTally {
        try transaction {
            var tally = ReadTally()
            selectRange.bindInt(2, length)
            for index in records {
                workload.writeKey(index, to: key)
                tally.reads += 1
                selectRange.bindBlob(1, key, Workload.keySize)
                var position = 0
                var previousCount = 0
                while try selectRange.step() {
                    let found = selectRange.columnBlob(0)
                    tally.countRangeEntry(
                        position, seeking: index, key: found, value: selectRange.columnBlob(1),
                        previous: UnsafeRawBufferPointer(start: previous, count: previousCount), workload: workload)
                    previousCount = min(found.count, SQLiteReader.maxKeySize)
                    if previousCount > 0 { previous.copyMemory(from: found.baseAddress!, byteCount: previousCount) }
                    position += 1
                }
                if position == 0 { tally.missing += 1 }
                selectRange.reset()
            }
            return tally
        }
    }

    func close() {
        for statement in [begin, commit, selectValue, selectRange] { statement.finalize() }
        try? connection.close()
    }
}

/// One SQLite connection, used by one thread at a time (opened with SQLITE_OPEN_NOMUTEX).
final class SQLiteConnection {
    let handle: OpaquePointer
    let path: String

    init(path: String) throws {
        self.path = path
        var handle: OpaquePointer? = nil
        let code = sqlite3_open_v2(
            path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        guard code == SQLITE_OK, let handle else {
            let detail = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(handle)
            throw BenchError.engine(engine: "SQLite", operation: "opening \(path)", detail: detail)
        }
        self.handle = handle
    }

    /// Rows changed by the last statement.
    var changes: Int { Int(sqlite3_changes(handle)) }

    func error(_ code: Int32, _ operation: String) -> BenchError {
        .engine(
            engine: "SQLite", operation: operation,
            detail: "error \(code): \(String(cString: sqlite3_errmsg(handle)))")
    }

    func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>? = nil
        let code = sqlite3_exec(handle, sql, nil, nil, &message)
        guard code == SQLITE_OK else {
            let detail = message.map { String(cString: $0) } ?? "error \(code)"
            sqlite3_free(message)
            throw BenchError.engine(engine: "SQLite", operation: "running \(sql)", detail: detail)
        }
    }

    /// Runs a statement that returns one text value and checks it, for pragmas that can refuse.
    func expect(_ sql: String, returns expected: String) throws {
        let statement = try prepare(sql)
        defer { statement.finalize() }
        guard try statement.step() else { throw error(SQLITE_DONE, "running \(sql): no row") }
        let found = statement.columnText(0)
        guard found == expected else {
            throw BenchError.engine(engine: "SQLite", operation: sql, detail: "returned \(found), expected \(expected)")
        }
    }

    func prepare(_ sql: String) throws -> SQLiteStatement {
        var statement: OpaquePointer? = nil
        let code = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard code == SQLITE_OK, let statement else { throw error(code, "preparing \(sql)") }
        return SQLiteStatement(handle: statement, connection: self, sql: sql)
    }

    func close() throws {
        let code = sqlite3_close(handle)
        guard code == SQLITE_OK else { throw error(code, "closing \(path)") }
    }
}

/// A prepared statement, reused: bind, step, reset.
final class SQLiteStatement {
    let handle: OpaquePointer
    unowned let connection: SQLiteConnection
    let sql: String

    init(handle: OpaquePointer, connection: SQLiteConnection, sql: String) {
        self.handle = handle
        self.connection = connection
        self.sql = sql
    }

    /// Binds `count` bytes at `bytes` without a copy (SQLITE_STATIC): they must stay put until
    /// the statement is reset.
    @inline(__always)
    func bindBlob(_ index: Int32, _ bytes: UnsafeRawPointer, _ count: Int) {
        sqlite3_bind_blob(handle, index, bytes, Int32(count), nil)
    }

    func bindInt(_ index: Int32, _ value: Int) {
        sqlite3_bind_int64(handle, index, sqlite3_int64(value))
    }

    /// Steps once: true with a row, false when done.
    @inline(__always)
    func step() throws -> Bool {
        let code = sqlite3_step(handle)
        if code == SQLITE_ROW { return true }
        if code == SQLITE_DONE { return false }
        let error = connection.error(code, "running \(sql)")
        sqlite3_reset(handle)
        throw error
    }

    /// Steps a statement that returns no rows, then resets it.
    @inline(__always)
    func run() throws {
        defer { sqlite3_reset(handle) }
        while try step() {}
    }

    @inline(__always)
    func reset() { sqlite3_reset(handle) }

    /// A column's bytes, valid until the next step or reset.
    @inline(__always)
    func columnBlob(_ column: Int32) -> UnsafeRawBufferPointer {
        let count = Int(sqlite3_column_bytes(handle, column))
        guard count > 0, let bytes = sqlite3_column_blob(handle, column) else {
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        return UnsafeRawBufferPointer(start: bytes, count: count)
    }

    func columnInt(_ column: Int32) -> Int { Int(sqlite3_column_int64(handle, column)) }

    func columnText(_ column: Int32) -> String {
        guard let text = sqlite3_column_text(handle, column) else { return "" }
        return String(cString: text)
    }

    func finalize() { sqlite3_finalize(handle) }
}
