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
    /// The partition's epoch: 1 until a promotion raises it (spec/file-format.md#header-page).
    var epoch: UInt64 = 1
    /// Where each epoch after the first began, oldest first, at most `maxEpochHistory`.
    var epochHistory: [EpochStart] = []

    /// Epoch starts kept in the header; when full, the oldest is dropped.
    static let maxEpochHistory = 16

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
        // Epoch 1 is written as zero, so a never-promoted file is byte for byte what the engine
        // wrote before epochs existed.
        page.setU64(168, epoch == 1 ? 0 : epoch)
        page.setU8(176, UInt8(epochHistory.count))
        for (index, start) in epochHistory.enumerated() {
            page.setU64(184 + index * 16, start.epoch)
            page.setU64(192 + index * 16, start.firstLSN.rawValue)
        }
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
        var header = PartitionHeader(
            pageSize: page.size, fileID: page.copyBytes(at: 24, count: 16), region: region, name: name,
            pageCount: page.u32(136), freelistHead: PageNumber(page.u32(140)), freeCount: page.u32(144),
            catalogRoot: PageNumber(page.u32(148)), ownerIndexRoot: PageNumber(page.u32(152)),
            nextTableID: page.u32(156), lastLSN: LSN(page.u64(160)))
        guard header.pageCount >= 3 else { throw bad("page count \(header.pageCount) below the minimum") }
        guard header.lastLSN.rawValue < 1 << 63 else { throw bad("impossible LSN \(header.lastLSN)") }
        guard header.catalogRoot.rawValue < header.pageCount, header.ownerIndexRoot.rawValue < header.pageCount,
            header.freelistHead.rawValue < header.pageCount
        else { throw bad("root or freelist page beyond the page count") }
        // Files written before epochs existed hold zero here: epoch 1, no history.
        header.epoch = max(1, page.u64(168))
        let historyCount = Int(page.u8(176))
        guard historyCount <= maxEpochHistory else { throw bad("epoch history of \(historyCount) entries") }
        var previous = EpochStart(epoch: 1, firstLSN: .zero)
        for index in 0..<historyCount {
            let start = EpochStart(
                epoch: page.u64(184 + index * 16), firstLSN: LSN(page.u64(192 + index * 16)))
            guard start.epoch > previous.epoch, start.firstLSN > previous.firstLSN,
                start.firstLSN <= header.lastLSN
            else { throw bad("epoch history entry \(index) does not follow the one before") }
            header.epochHistory.append(start)
            previous = start
        }
        guard header.epochHistory.last.map({ $0.epoch == header.epoch }) ?? (header.epoch == 1) else {
            throw bad("epoch \(header.epoch) is not the newest entry of the epoch history")
        }
        return header
    }
}

/// Where one epoch of a partition began: the LSN of the commit that raised the epoch
/// (`Partition.beginEpoch`). Epoch 1 begins at LSN 1 and has no entry.
public struct EpochStart: Equatable, Sendable {
    public let epoch: UInt64
    public let firstLSN: LSN

    public init(epoch: UInt64, firstLSN: LSN) {
        self.epoch = epoch
        self.firstLSN = firstLSN
    }
}
