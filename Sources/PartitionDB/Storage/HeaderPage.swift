/// The decoded contents of page 0. Layout: spec/file-format.md#header-page
struct PartitionHeader: Equatable {
    static let magic: [UInt8] = Array("PDBPART\0".utf8)
    static let formatVersion: UInt32 = 2
    static let minPageSize = 4096
    static let maxPageSize = 32768

    // Fixed at creation.
    var pageSize: Int
    var fileID: [UInt8]  // 16 bytes
    var region: Region
    var name: String

    // Changed by commits.
    var pageCount: UInt32
    var freelistHead: PageNumber
    var freeCount: UInt32
    var catalogRoot: PageNumber
    var ownerIndexRoot: PageNumber
    var nextTableID: UInt32
    var lastLSN: LSN

    static func isValidPageSize(_ size: Int) -> Bool {
        size >= minPageSize && size <= maxPageSize && size & (size - 1) == 0
    }

    func encode() -> Page {
        var page = Page(size: pageSize)
        page.setU8(4, PageKind.header.rawValue)
        page.setBytes(at: 8, PartitionHeader.magic)
        page.setU32(16, PartitionHeader.formatVersion)
        page.setU32(20, UInt32(pageSize))
        page.setBytes(at: 24, fileID)
        let regionBytes = Array(region.name.utf8)
        page.setU8(40, UInt8(regionBytes.count))
        page.setBytes(at: 41, regionBytes)
        let nameBytes = Array(name.utf8)
        page.setU8(72, UInt8(nameBytes.count))
        page.setBytes(at: 73, nameBytes)
        page.setU32(136, pageCount)
        page.setU32(140, freelistHead.rawValue)
        page.setU32(144, freeCount)
        page.setU32(148, catalogRoot.rawValue)
        page.setU32(152, ownerIndexRoot.rawValue)
        page.setU32(156, nextTableID)
        page.setU64(160, lastLSN.rawValue)
        return page
    }

    /// Reads the fields that say what kind of file this is, from the first bytes of the file.
    /// Returns the page size, or throws `badFormat` when the file is not a partition.
    static func probePageSize(_ prefix: [UInt8], file: String) throws -> Int {
        func bad(_ reason: String) -> PartitionDBError { .badFormat(file: file, reason: reason) }
        guard prefix.count >= 24 else { throw bad("file is shorter than a header") }
        guard Array(prefix[8..<16]) == magic else { throw bad("no PartitionDB header magic") }
        let page = Page(bytes: prefix)
        let version = page.u32(16)
        guard version == formatVersion else {
            throw bad(
                "format version \(version), this build reads version \(formatVersion) only; open the file with "
                    + "the release that wrote it and copy its records into a new partition")
        }
        let size = Int(page.u32(20))
        guard isValidPageSize(size) else { throw bad("impossible page size \(size)") }
        return size
    }

    /// Decodes a page 0 whose checksum has been verified.
    static func decode(_ page: Page, file: String) throws -> PartitionHeader {
        func bad(_ reason: String) -> PartitionDBError { .corruptPage(file: file, page: 0, reason: reason) }
        guard page.kind == PageKind.header.rawValue else { throw bad("page 0 is not a header page") }
        guard Array(page.bytes[8..<16]) == magic else { throw bad("no header magic") }
        guard page.u32(16) == formatVersion else {
            throw PartitionDBError.badFormat(
                file: file, reason: "format version \(page.u32(16)) is not \(formatVersion)")
        }
        guard Int(page.u32(20)) == page.size else { throw bad("page size field disagrees with page") }
        let regionLength = Int(page.u8(40))
        guard regionLength > 0, regionLength <= Region.maxLength else { throw bad("bad region length") }
        guard let regionName = String(validating: page.copyBytes(at: 41, count: regionLength), as: UTF8.self),
            let region = regionName == Region.global.name ? Region.global : try? Region(regionName)
        else { throw bad("bad region tag") }
        let nameLength = Int(page.u8(72))
        guard nameLength > 0, nameLength <= 63,
            let name = String(validating: page.copyBytes(at: 73, count: nameLength), as: UTF8.self)
        else { throw bad("bad partition name") }
        let header = PartitionHeader(
            pageSize: page.size, fileID: page.copyBytes(at: 24, count: 16), region: region, name: name,
            pageCount: page.u32(136), freelistHead: PageNumber(page.u32(140)), freeCount: page.u32(144),
            catalogRoot: PageNumber(page.u32(148)), ownerIndexRoot: PageNumber(page.u32(152)),
            nextTableID: page.u32(156), lastLSN: LSN(page.u64(160)))
        guard header.pageCount >= 3 else { throw bad("page count \(header.pageCount) below the minimum") }
        guard header.lastLSN.rawValue < 1 << 63 else { throw bad("impossible LSN \(header.lastLSN)") }
        guard header.catalogRoot.rawValue < header.pageCount, header.ownerIndexRoot.rawValue < header.pageCount,
            header.freelistHead.rawValue < header.pageCount
        else { throw bad("root or freelist page beyond the page count") }
        return header
    }
}
