/// A table's entry in the catalog tree: its id (used in owner-index keys), its root page and
/// its record count. Layout: spec/file-format.md#catalog
struct TableInfo: Equatable {
    var id: UInt32
    var root: PageNumber
    var count: UInt64

    static let encodedSize = 16

    func encode() -> [UInt8] {
        var page = Page(size: TableInfo.encodedSize)
        page.setU32(0, id)
        page.setU32(4, root.rawValue)
        page.setU64(8, count)
        return page.bytes
    }

    static func decode(_ bytes: [UInt8]) -> TableInfo? {
        guard bytes.count == encodedSize else { return nil }
        let page = Page(bytes: bytes)
        return TableInfo(id: page.u32(0), root: PageNumber(page.u32(4)), count: page.u64(8))
    }
}

/// Owner-index keys: owner length (1 byte), owner, table id (4 bytes, big-endian so one owner's
/// records group by table), record key. The index holds no values.
enum OwnerIndexKey {
    static func make(owner: [UInt8], tableID: UInt32, key: [UInt8]) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(1 + owner.count + 4 + key.count)
        result.append(UInt8(owner.count))
        result.append(contentsOf: owner)
        withUnsafeBytes(of: tableID.bigEndian) { result.append(contentsOf: $0) }
        result.append(contentsOf: key)
        return result
    }

    static func prefix(owner: [UInt8]) -> [UInt8] { [UInt8(owner.count)] + owner }

    static func split(_ indexKey: [UInt8]) -> (owner: [UInt8], tableID: UInt32, key: [UInt8])? {
        guard let first = indexKey.first else { return nil }
        let ownerLength = Int(first)
        guard indexKey.count >= 1 + ownerLength + 4 else { return nil }
        let owner = Array(indexKey[1..<(1 + ownerLength)])
        var id: UInt32 = 0
        for b in indexKey[(1 + ownerLength)..<(5 + ownerLength)] { id = id << 8 | UInt32(b) }
        return (owner, id, Array(indexKey[(5 + ownerLength)...]))
    }
}
