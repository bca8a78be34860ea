/// The one write transaction of a partition. Valid only inside `Partition.write`'s closure: it
/// commits when the closure returns and rolls back when it throws.
public final class WriteTransaction: ReadTransaction {
    public static let maxKeySize = 1024
    public static let maxValueSize = 64 << 20

    /// `context`, typed: a stored reference, so the write path neither casts nor retains it.
    let writeContext: WriteContext

    init(context: WriteContext, partition: Partition) {
        writeContext = context
        super.init(context: context, partition: partition)
    }
    /// Set when an operation failed after it had begun changing pages: the transaction can only roll back.
    var isBroken = false
    /// Set by `Partition.writeReserved`: this transaction may change the reserved tables.
    var mayWriteReservedTables = false

    /// Refuses a change to a reserved table (`Partition.isReserved`) unless the transaction is the
    /// project's own.
    private func checkUnreserved(_ table: String) throws {
        guard mayWriteReservedTables || !partition.isReserved(table) else {
            throw PartitionDBError.reservedTable(partition: partition.name, table: table)
        }
    }

    /// Creates `table` if it does not exist. Returns whether it was created.
    @discardableResult
    public func createTable(_ table: String) throws -> Bool {
        try Names.validate(table, kind: "table")
        try checkUnreserved(table)
        if try tableInfo(table) != nil { return false }
        try changing {
            let root = try writeContext.allocate()
            writeContext.put(root, Page.emptyNode(kind: .leaf, size: writeContext.pageSize))
            let state = TableState(info: TableInfo(id: writeContext.header.nextTableID, root: root, count: 0))
            state.changed = true
            guard writeContext.header.nextTableID < UInt32.max else {
                throw PartitionDBError.corruptPage(
                    file: writeContext.path, page: PageNumber.header.rawValue, reason: "next table id at its maximum")
            }
            writeContext.header.nextTableID += 1
            tableCache[table] = state
            remember(table, state)
        }
        return true
    }

    /// Removes `table` and all its records. Returns whether it existed.
    @discardableResult
    public func dropTable(_ table: String) throws -> Bool {
        try checkUnreserved(table)
        guard let info = try tableInfo(table) else { return false }
        try changing {
            var cursor = TreeCursor(root: info.root)
            try cursor.first(in: context)
            var owned: [[UInt8]] = []
            while cursor.isValid {
                let owner = cursor.leaf.leafOwner(cursor.index)
                if !owner.isEmpty {
                    owned.append(
                        OwnerIndexKey.make(owner: owner, tableID: info.id, key: cursor.leaf.leafKey(cursor.index)))
                }
                try cursor.next(in: context)
            }
            for indexKey in owned {
                _ = try BTree.delete(indexKey, root: writeContext.header.ownerIndexRoot, in: writeContext)
            }
            try BTree.clear(root: info.root, in: writeContext, freeRoot: true)
            _ = try BTree.delete(Array(table.utf8), root: writeContext.header.catalogRoot, in: writeContext)
            tableCache[table] = nil
            remember(table, nil)
        }
        return true
    }

    /// Inserts or replaces the record under `key`. In a regional partition `owner` is required and
    /// must live in the partition's region (the engine asks the resolver); in the global partition
    /// records have no owner. A refused record throws before anything is written, and the
    /// transaction can go on. The table is created if it does not exist.
    public func put(_ table: String, _ key: [UInt8], _ value: [UInt8], owner: SubjectID? = nil) throws {
        try key.withUnsafeBytes { key in
            try value.withUnsafeBytes { value in try put(table, key, value, owner: owner) }
        }
    }

    /// `put(_:_:_:owner:)` for a key and value in buffers the caller owns (LMDB's `MDB_val`
    /// style): nothing is allocated per record on the way into the page. The buffers are read
    /// before the call returns and not kept.
    public func put(
        _ table: String, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, owner: SubjectID? = nil
    ) throws {
        checkOpen()
        try checkUnreserved(table)
        try validate(keySize: key.count, valueSize: value.count)
        try partition.checkResidency(owner: owner)
        var state = try tableState(table)
        if state == nil {
            try createTable(table)
            state = try tableState(table)
        }
        try changing { try putUnchecked(state!, key, value, owner: owner.map { Array($0.rawValue.utf8) } ?? []) }
    }

    /// The write path after the residency check: used by `put` and by compaction's copy.
    func putUnchecked(_ table: String, _ key: [UInt8], _ value: [UInt8], owner: [UInt8]) throws {
        try key.withUnsafeBytes { key in
            try value.withUnsafeBytes { value in try putUnchecked(table, key, value, owner: owner) }
        }
    }

    func putUnchecked(_ table: String, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, owner: [UInt8])
        throws
    {
        guard let state = try tableState(table) else {
            throw PartitionDBError.noSuchTable(partition: partition.name, table: table)
        }
        try putUnchecked(state, key, value, owner: owner)
    }

    private func putUnchecked(
        _ state: TableState, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, owner: [UInt8]
    ) throws {
        let info = state.info
        let ctx = writeContext
        let inlineSize = NodeLayout.leafCellHeader + key.count + owner.count + value.count
        var overflow: (PageNumber, Int)? = nil
        if inlineSize > NodeLayout.maxCell(pageSize: ctx.pageSize) {
            overflow = (try ctx.writeOverflow(value), value.count)
        }
        let removed = try owner.withUnsafeBytes { ownerBytes in
            try Page.withLeafCell(key: key, owner: ownerBytes, value: value, overflow: overflow) { cell in
                try BTree.insert(key, cell: cell, root: info.root, in: ctx)
            }
        }
        if let removed {
            if let overflow = removed.overflow { try ctx.freeOverflow(first: overflow.first, length: overflow.length) }
            if removed.owner != owner && !removed.owner.isEmpty {
                let old = OwnerIndexKey.make(owner: removed.owner, tableID: info.id, key: Array(key))
                _ = try BTree.delete(old, root: ctx.header.ownerIndexRoot, in: ctx)
            }
        } else {
            guard state.info.count < UInt64(Int.max) else { throw catalogDamage(state, "counts too many records") }
            state.info.count += 1
            state.changed = true
        }
        if !owner.isEmpty && removed?.owner != owner {
            let indexKey = OwnerIndexKey.make(owner: owner, tableID: info.id, key: Array(key))
            let indexCell = Page.leafCell(key: indexKey, owner: [], value: [], overflow: nil)
            try BTree.insert(indexKey, cell: indexCell, root: ctx.header.ownerIndexRoot, in: ctx)
        }
    }

    /// Removes the record under `key`. Returns whether it existed.
    @discardableResult
    public func delete(_ table: String, _ key: [UInt8]) throws -> Bool {
        try key.withUnsafeBytes { try delete(table, $0) }
    }

    /// `delete(_:_:)` for a key in a buffer the caller owns.
    @discardableResult
    public func delete(_ table: String, _ key: UnsafeRawBufferPointer) throws -> Bool {
        checkOpen()
        try checkUnreserved(table)
        guard let state = try tableState(table) else { return false }
        let info = state.info
        return try changing {
            let ctx = writeContext
            guard let removed = try BTree.delete(key, root: info.root, in: ctx) else { return false }
            if let overflow = removed.overflow { try ctx.freeOverflow(first: overflow.first, length: overflow.length) }
            if !removed.owner.isEmpty {
                let indexKey = OwnerIndexKey.make(owner: removed.owner, tableID: info.id, key: Array(key))
                _ = try BTree.delete(indexKey, root: ctx.header.ownerIndexRoot, in: ctx)
            }
            // The count comes from disk (the catalog entry): 0 here is damage, not a reason to trap.
            guard state.info.count > 0 else { throw catalogDamage(state, "counts 0 records but the table holds one") }
            state.info.count -= 1
            state.changed = true
            return true
        }
    }

    /// The error for a catalog entry whose stored count cannot be right (it came from disk).
    private func catalogDamage(_ state: TableState, _ what: String) -> PartitionDBError {
        .corruptPage(
            file: writeContext.path, page: writeContext.header.catalogRoot.rawValue,
            reason: "a catalog entry (table id \(state.info.id)) \(what)")
    }

    private func validate(keySize: Int, valueSize: Int) throws {
        guard keySize > 0 else { throw PartitionDBError.keyEmpty }
        guard keySize <= WriteTransaction.maxKeySize else {
            throw PartitionDBError.keyTooLarge(size: keySize, limit: WriteTransaction.maxKeySize)
        }
        guard valueSize <= WriteTransaction.maxValueSize else {
            throw PartitionDBError.valueTooLarge(size: valueSize, limit: WriteTransaction.maxValueSize)
        }
    }

    /// Runs a change; if it fails half-way the transaction is broken and can only roll back.
    private func changing<T>(_ body: () throws -> T) throws -> T {
        checkOpen()
        precondition(!isBroken, "a write transaction was used after one of its changes failed; roll it back")
        do {
            return try body()
        } catch {
            isBroken = true
            throw error
        }
    }

    /// The roots of the trees this transaction may have changed: the catalog, the owner index
    /// and the tables it used.
    var treeRoots: [PageNumber] {
        [writeContext.header.catalogRoot, writeContext.header.ownerIndexRoot] + tableCache.values.map { $0.info.root }
    }

    /// Writes the changed catalog entries; called once, before the commit.
    func flushCatalog() throws {
        let ctx = writeContext
        for (name, state) in tableCache.sorted(by: { $0.key < $1.key }) where state.changed {
            let info = state.info
            state.changed = false
            let key = Array(name.utf8)
            let cell = Page.leafCell(key: key, owner: [], value: info.encode(), overflow: nil)
            try BTree.insert(key, cell: cell, root: ctx.header.catalogRoot, in: ctx)
        }
    }
}
