/// One record as a scan or cursor returns it.
public struct Record: Equatable, Sendable {
    public var key: [UInt8]
    public var value: [UInt8]
    /// The subject the record is about; nil in the global partition.
    public var owner: SubjectID?
}

/// One end of a key range.
public enum KeyBound: Equatable, Sendable {
    case unbounded
    case inclusive([UInt8])
    case exclusive([UInt8])
}

/// A range of keys, bytewise ordered.
public struct KeyRange: Equatable, Sendable {
    public var lower: KeyBound
    public var upper: KeyBound

    public init(lower: KeyBound = .unbounded, upper: KeyBound = .unbounded) {
        self.lower = lower
        self.upper = upper
    }

    public static let all = KeyRange()

    /// Every key that starts with `prefix`.
    public static func prefix(_ prefix: [UInt8]) -> KeyRange {
        guard !prefix.isEmpty else { return .all }
        // The smallest key after all keys with this prefix: drop trailing 0xFF bytes, then add one.
        var end = prefix
        while let last = end.last, last == 0xFF { end.removeLast() }
        guard !end.isEmpty else { return KeyRange(lower: .inclusive(prefix)) }
        end[end.count - 1] += 1
        return KeyRange(lower: .inclusive(prefix), upper: .exclusive(end))
    }

    func isBelowUpper(_ key: [UInt8]) -> Bool {
        switch upper {
        case .unbounded: return true
        case .inclusive(let bound): return compareBytes(key, bound) <= 0
        case .exclusive(let bound): return compareBytes(key, bound) < 0
        }
    }

    func isAboveLower(_ key: [UInt8]) -> Bool {
        switch lower {
        case .unbounded: return true
        case .inclusive(let bound): return compareBytes(key, bound) >= 0
        case .exclusive(let bound): return compareBytes(key, bound) > 0
        }
    }
}

/// A table's catalog entry as a transaction sees it; a write transaction changes it in place.
final class TableState {
    var info: TableInfo
    /// Whether the entry must be written back to the catalog at commit.
    var changed = false

    init(info: TableInfo) { self.info = info }
}

/// A read-only view of a partition as of one commit. Valid only inside the closure of
/// `Partition.read` (or `Partition.write`, as the base of `WriteTransaction`).
public class ReadTransaction {
    let context: PageContext
    let partition: Partition
    /// Tables this transaction has looked up, and the last one (most operations name the same
    /// table over and over; comparing the name is cheaper than hashing it).
    var tableCache: [String: TableState] = [:]
    /// The last table looked up, kept as two fields rather than a tuple: the fast path compares
    /// the name in place, without copying (and reference counting) a tuple on every call.
    private var lastTableName: String? = nil
    private var lastTableState: TableState? = nil
    var isFinished = false

    init(context: PageContext, partition: Partition) {
        self.context = context
        self.partition = partition
    }

    /// The LSN of the commit this transaction sees (or, while writing, the one it will get).
    public var lsn: LSN { context.header.lastLSN }

    func checkOpen() {
        precondition(!isFinished, "a transaction was used after its closure returned")
    }

    // MARK: Tables

    func tableInfo(_ name: String) throws -> TableInfo? { try tableState(name)?.info }

    func tableState(_ name: String) throws -> TableState? {
        checkOpen()
        if lastTableName == name { return lastTableState }
        if let state = tableCache[name] {
            remember(name, state)
            return state
        }
        let found = try BTree.find(Array(name.utf8), root: context.header.catalogRoot, in: context)
        guard found.found else { return nil }
        let bytes = try value(of: found.leaf, found.index)
        guard let info = TableInfo.decode(bytes), info.root != .header,
            info.root.rawValue < context.header.pageCount, info.count <= UInt64(Int.max)
        else {
            throw PartitionDBError.corruptPage(
                file: context.path, page: found.number.rawValue, reason: "bad catalog entry")
        }
        let state = TableState(info: info)
        tableCache[name] = state
        remember(name, state)
        return state
    }

    /// Makes `state` the table the next lookup of `name` finds first; nil forgets it.
    func remember(_ name: String, _ state: TableState?) {
        lastTableName = state == nil ? nil : name
        lastTableState = state
    }

    func requireTable(_ name: String) throws -> TableInfo {
        guard let info = try tableInfo(name) else {
            throw PartitionDBError.noSuchTable(partition: partition.name, table: name)
        }
        return info
    }

    /// The names of all tables, sorted.
    public func tables() throws -> [String] {
        checkOpen()
        var names: [String] = []
        var cursor = TreeCursor(root: context.header.catalogRoot)
        try cursor.first(in: context)
        while cursor.isValid {
            names.append(String(decoding: cursor.leaf.leafKey(cursor.index), as: UTF8.self))
            try cursor.next(in: context)
        }
        return names
    }

    public func hasTable(_ name: String) throws -> Bool { try tableInfo(name) != nil }

    /// The number of records in `table`, kept in the catalog: O(1).
    public func count(_ table: String) throws -> Int {
        Int(try requireTable(table).count)
    }

    // MARK: Records

    func value(of leaf: Page, _ index: Int) throws -> [UInt8] {
        switch leaf.leafValue(index) {
        case .inline(let offset, let length): return leaf.copyBytes(at: offset, count: length)
        case .overflow(let first, let length): return try context.readOverflow(first: first, length: length)
        }
    }

    /// Calls `body` with the value of cell `index`: a view into the page for inline values, a
    /// temporary copy for overflow values.
    func withValue<T>(of leaf: Page, _ index: Int, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        switch leaf.leafValue(index) {
        case .inline(let offset, let length):
            return try leaf.withBytes(at: offset, count: length, body)
        case .overflow(let first, let length):
            return try context.readOverflow(first: first, length: length).withUnsafeBytes(body)
        }
    }

    /// Calls `body` with the value stored under `key` (nil when there is none), without copying
    /// it when it lies in the page. The buffer is valid only inside `body`.
    public func withValue<T>(_ table: String, _ key: [UInt8], _ body: (UnsafeRawBufferPointer?) throws -> T) throws -> T
    {
        try key.withUnsafeBytes { try withValue(table, $0, body) }
    }

    /// `withValue(_:_:_:)` for a key in a buffer the caller owns (no array needed per lookup, as
    /// with LMDB's `MDB_val`).
    public func withValue<T>(
        _ table: String, _ key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer?) throws -> T
    ) throws -> T {
        let info = try requireTable(table)
        let found = try BTree.find(key, root: info.root, in: context)
        guard found.found else { return try body(nil) }
        return try withValue(of: found.leaf, found.index) { try body($0) }
    }

    func record(of leaf: Page, _ index: Int) throws -> Record {
        let owner = leaf.leafOwner(index)
        return Record(
            key: leaf.leafKey(index), value: try value(of: leaf, index),
            owner: owner.isEmpty ? nil : SubjectID(unchecked: owner))
    }

    /// The value stored under `key`, or nil.
    public func get(_ table: String, _ key: [UInt8]) throws -> [UInt8]? {
        let info = try requireTable(table)
        let found = try BTree.find(key, root: info.root, in: context)
        return found.found ? try value(of: found.leaf, found.index) : nil
    }

    /// The whole record stored under `key` (with its owner), or nil.
    public func record(_ table: String, _ key: [UInt8]) throws -> Record? {
        let info = try requireTable(table)
        let found = try BTree.find(key, root: info.root, in: context)
        return found.found ? try record(of: found.leaf, found.index) : nil
    }

    /// Calls `body` for each record in `range`, in key order (or reverse), until it returns false.
    public func scan(
        _ table: String, range: KeyRange = .all, reverse: Bool = false, _ body: (Record) throws -> Bool
    ) throws {
        let cursor = try self.cursor(table)
        if reverse {
            switch range.upper {
            case .unbounded: try cursor.last()
            case .inclusive(let key):
                try cursor.seek(key)
                if !cursor.isValid {
                    try cursor.last()
                } else if compareBytes(cursor.key, key) > 0 {
                    try cursor.previous()
                }
            case .exclusive(let key):
                try cursor.seek(key)
                if !cursor.isValid { try cursor.last() } else { try cursor.previous() }
            }
            while cursor.isValid, range.isAboveLower(cursor.key) {
                guard try body(cursor.record()) else { return }
                try cursor.previous()
            }
        } else {
            switch range.lower {
            case .unbounded: try cursor.first()
            case .inclusive(let key): try cursor.seek(key)
            case .exclusive(let key):
                try cursor.seek(key)
                if cursor.isValid, cursor.key == key { try cursor.next() }
            }
            while cursor.isValid, range.isBelowUpper(cursor.key) {
                guard try body(cursor.record()) else { return }
                try cursor.next()
            }
        }
    }

    /// A cursor over `table`, positioned nowhere until a `first`, `last` or `seek`.
    public func cursor(_ table: String) throws -> Cursor {
        let info = try requireTable(table)
        return Cursor(transaction: self, tree: TreeCursor(root: info.root))
    }

    /// Every (table, key) of records owned by `subject`, from the owner index, without a scan.
    public func keys(ownedBy subject: SubjectID) throws -> [(table: String, key: [UInt8])] {
        checkOpen()
        let owner = Array(subject.rawValue.utf8)
        var names: [UInt32: String] = [:]
        for name in try tables() { names[try requireTable(name).id] = name }
        var result: [(String, [UInt8])] = []
        var cursor = TreeCursor(root: context.header.ownerIndexRoot)
        let prefix = OwnerIndexKey.prefix(owner: owner)
        try cursor.seek(prefix, in: context)
        while cursor.isValid {
            let indexKey = cursor.leaf.leafKey(cursor.index)
            guard indexKey.starts(with: prefix), let parts = OwnerIndexKey.split(indexKey), parts.owner == owner else {
                break
            }
            guard let name = names[parts.tableID] else {
                throw PartitionDBError.corruptPage(
                    file: context.path, page: cursor.stack.last!.number.rawValue,
                    reason: "owner index names a missing table")
            }
            result.append((name, parts.key))
            try cursor.next(in: context)
        }
        return result
    }
}

/// A cursor over one table inside a transaction. If the transaction writes to the table, the
/// cursor finds its place again by key before it moves.
public final class Cursor {
    let transaction: ReadTransaction
    /// The position, in memory of its own rather than in a stored property: each move and each
    /// `isValid` would otherwise pay the runtime's dynamic exclusivity check on class properties
    /// (about a fifth of a range scan's instructions). A cursor serves one transaction on one
    /// thread, and nothing reaches the position but this class while a move runs.
    private let position: UnsafeMutablePointer<TreeCursor>
    /// The write context's change count when the cursor last moved (0 in read transactions).
    private var seenChanges: Int
    private let writeContext: WriteContext?

    init(transaction: ReadTransaction, tree: TreeCursor) {
        self.transaction = transaction
        position = .allocate(capacity: 1)
        position.initialize(to: tree)
        self.writeContext = transaction.context as? WriteContext
        self.seenChanges = writeContext?.changeCount ?? 0
    }

    deinit {
        position.deinitialize(count: 1)
        position.deallocate()
    }

    /// The position, read in place.
    var tree: TreeCursor {
        _read { yield position.pointee }
    }

    private var context: PageContext { transaction.context }

    public var isValid: Bool { tree.isValid }

    /// The key at the cursor; only while `isValid`. (The cursor's copy of its leaf keeps the key
    /// even after the transaction changed the page.)
    public var key: [UInt8] {
        precondition(tree.isValid, "cursor is not on a record")
        return tree.leaf.leafKey(tree.index)
    }

    public func record() throws -> Record {
        try refresh()
        return try transaction.record(of: tree.leaf, tree.index)
    }

    public var value: [UInt8] {
        get throws { try record().value }
    }

    /// Calls `body` with the key and value at the cursor, without copying them when the value
    /// lies in the page. The buffers are valid only inside `body`.
    public func withCurrent<T>(_ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> T)
        throws
        -> T
    {
        try refresh()
        let leaf = tree.leaf
        let index = tree.index
        leaf.prefetchCell(index + 1)
        let offset = leaf.cellOffset(index)
        let keyLength = leaf.leafKeyLength(at: offset)
        switch leaf.leafValue(index) {
        case .inline(let valueOffset, let valueLength):
            // One closure for both buffers: this is the inner loop of every range scan.
            let keyStart = offset + NodeLayout.leafCellHeader
            precondition(
                keyStart >= 0 && keyStart + keyLength <= leaf.size && valueOffset >= 0
                    && valueOffset + valueLength <= leaf.size, "cell outside the page")
            return try leaf.withUnsafeBytes { page in
                try body(
                    UnsafeRawBufferPointer(start: page.baseAddress! + keyStart, count: keyLength),
                    UnsafeRawBufferPointer(start: page.baseAddress! + valueOffset, count: valueLength))
            }
        case .overflow(let first, let length):
            let value = try context.readOverflow(first: first, length: length)
            return try leaf.withBytes(at: offset + NodeLayout.leafCellHeader, count: keyLength) { key in
                try value.withUnsafeBytes { try body(key, $0) }
            }
        }
    }

    public func first() throws { try move { try $0.first(in: context) } }
    public func last() throws { try move { try $0.last(in: context) } }
    /// Positions at the first key >= `key`.
    public func seek(_ key: [UInt8]) throws { try move { try $0.seek(key, in: context) } }
    /// `seek(_:)` for a key in a buffer the caller owns.
    public func seek(_ key: UnsafeRawBufferPointer) throws { try move { try $0.seek(key, in: context) } }

    public func next() throws {
        guard tree.isValid else { return }
        if changedSinceLastMove {
            let key = self.key
            try move { tree in
                try tree.seek(key, in: context)
                if tree.isValid, tree.leaf.leafKey(tree.index) == key { try tree.next(in: context) }
            }
        } else {
            try move { try $0.next(in: context) }
        }
    }

    public func previous() throws {
        guard tree.isValid else { return }
        if changedSinceLastMove {
            let key = self.key
            try move { tree in
                try tree.seek(key, in: context)
                if tree.isValid { try tree.previous(in: context) } else { try tree.last(in: context) }
            }
        } else {
            try move { try $0.previous(in: context) }
        }
    }

    private var changedSinceLastMove: Bool {
        guard let writeContext else { return false }
        return writeContext.changeCount != seenChanges
    }

    private func refresh() throws {
        transaction.checkOpen()
        precondition(tree.isValid, "cursor is not on a record")
        if changedSinceLastMove {
            let key = self.key
            try move { try $0.seek(key, in: context) }
        }
    }

    private func move(_ body: (inout TreeCursor) throws -> Void) throws {
        transaction.checkOpen()
        try body(&position.pointee)
        if let writeContext { seenChanges = writeContext.changeCount }
    }
}

extension SubjectID {
    init(unchecked bytes: [UInt8]) { self.rawValue = String(decoding: bytes, as: UTF8.self) }
}
