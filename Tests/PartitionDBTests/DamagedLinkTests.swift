import Foundation
import XCTest

@testable import PartitionDB

/// Counts and links read from disk never trap or loop: pages forged with valid checksums (so
/// only their content is wrong) that hold a cycle of branch links, a looping overflow chain, a
/// looping free list, or counts of 0 where something is counted. `check()` terminates and reports
/// problems; reads and writes throw `corruptPage`.
final class DamagedLinkTests: XCTestCase {
    static let pageSize = 4096

    /// A closed database whose global partition has had `body` written; returns the directory.
    func makeDatabase(_ body: (WriteTransaction) throws -> Void) throws -> String {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        try db.globalPartition().write(body)
        try db.close()
        return path
    }

    func file(_ path: String) -> String { path + "/global.pdb" }

    func readPage(_ path: String, _ number: UInt32) throws -> Page {
        let data = try Data(contentsOf: URL(fileURLWithPath: file(path)))
        let start = Int(number) * DamagedLinkTests.pageSize
        return Page(bytes: Array(data[start..<(start + DamagedLinkTests.pageSize)]))
    }

    /// Writes `page` as page `number`, sealed, so its checksum holds.
    func writePage(_ path: String, _ number: UInt32, _ page: Page) throws {
        var page = page
        page.seal(number: PageNumber(number))
        let handle = try XCTUnwrap(Foundation.FileHandle(forUpdatingAtPath: file(path)))
        try handle.seek(toOffset: UInt64(number) * UInt64(DamagedLinkTests.pageSize))
        try handle.write(contentsOf: Data(page.bytes))
        try handle.close()
    }

    func header(_ path: String) throws -> PartitionHeader {
        try PartitionHeader.decode(try readPage(path, 0), file: file(path))
    }

    /// The catalog leaf (page 1) and the index of `table`'s entry in it.
    func catalogEntry(_ path: String, _ table: String) throws -> (page: Page, index: Int, info: TableInfo) {
        let catalog = try readPage(path, 1)
        XCTAssertTrue(catalog.isLeaf)
        let index = try XCTUnwrap((0..<catalog.cellCount).first { catalog.leafKey($0) == bytes(table) })
        guard case .inline(let offset, let length) = catalog.leafValue(index) else {
            XCTFail("catalog entries are inline")
            throw PartitionDBError.corruptPage(file: file(path), page: 1, reason: "catalog entry not inline")
        }
        let info = try XCTUnwrap(TableInfo.decode(catalog.copyBytes(at: offset, count: length)))
        return (catalog, index, info)
    }

    func assertCorrupt<T>(_ expression: @autoclosure () throws -> T, _ message: String, line: UInt = #line) {
        XCTAssertThrowsError(try expression(), message, line: line) { error in
            guard case .corruptPage = error as? PartitionDBError else {
                return XCTFail("\(message): \(error)", line: line)
            }
        }
    }

    /// Opens the damaged database, runs `body` on its global partition under a watchdog (a loop
    /// would otherwise hang the test run), and closes it.
    func withDamaged(_ path: String, _ body: (Partition) throws -> Void) throws {
        let watchdog = Watchdog(limit: 60)
        defer { watchdog.stop() }
        watchdog.arm(name)
        let db = try Database.open(at: path, region: eu)
        defer { try? db.close() }
        try body(try db.globalPartition())
        watchdog.disarm()
    }

    func testBranchLinkBackToAnAncestor() throws {
        let value = [UInt8](repeating: 7, count: 200)
        let path = try makeDatabase { tx in
            for i in 0..<200 { try tx.put("t", bytes(String(format: "k%04d", i)), value) }
        }
        let root = try catalogEntry(path, "t").info.root
        let rootPage = try readPage(path, root.rawValue)
        XCTAssertFalse(rootPage.isLeaf, "200 records of 200 bytes need more than one leaf")
        // The first leaf becomes a branch whose every link leads back to the root.
        let leaf = rootPage.branchChild(0)
        let firstKey = try readPage(path, leaf.rawValue).leafKey(0)
        let cycle = Page.node(
            kind: .branch, size: DamagedLinkTests.pageSize, cells: [Page.branchCell(child: root, key: firstKey)],
            link: root)
        try writePage(path, leaf.rawValue, cycle)

        try withDamaged(path) { p in
            let report = try p.check()
            XCTAssertFalse(report.isClean)
            XCTAssertTrue(report.damagedPages.contains(root.rawValue), "\(report.problems.prefix(4))")
            assertCorrupt(try p.read { try $0.get("t", firstKey) }, "get")
            assertCorrupt(try p.read { tx in try tx.scan("t") { _ in true } }, "scan")
            assertCorrupt(try p.write { try $0.put("t", firstKey, bytes("v")) }, "put")
            assertCorrupt(try p.write { try $0.delete("t", firstKey) }, "delete")
            assertCorrupt(try p.write { try $0.dropTable("t") }, "dropTable")
            // The failed writes rolled back: the other records still read.
            try p.read { tx in XCTAssertEqual(try tx.get("t", bytes("k0199")), value) }
        }
    }

    func testBranchThatIsItsOwnChild() throws {
        let path = try makeDatabase { try $0.put("t", bytes("k"), bytes("v")) }
        let root = try catalogEntry(path, "t").info.root
        let cycle = Page.node(
            kind: .branch, size: DamagedLinkTests.pageSize, cells: [Page.branchCell(child: root, key: bytes("k"))],
            link: root)
        try writePage(path, root.rawValue, cycle)
        try withDamaged(path) { p in
            XCTAssertFalse(try p.check().isClean)
            assertCorrupt(try p.read { try $0.get("t", bytes("k")) }, "get")
            assertCorrupt(try p.write { try $0.put("t", bytes("a"), bytes("v")) }, "put")
            assertCorrupt(try p.write { try $0.dropTable("t") }, "dropTable")
        }
    }

    func testOverflowChainThatLoops() throws {
        let value = [UInt8](repeating: 9, count: 9000)
        let path = try makeDatabase { try $0.put("t", bytes("big"), value) }
        let rootPage = try readPage(path, try catalogEntry(path, "t").info.root.rawValue)
        guard case .overflow(let first, let length) = rootPage.leafValue(0) else { return XCTFail("not overflow") }
        XCTAssertEqual(length, 9000)
        // Three pages: first -> second -> third. Make the second link back to the first.
        let second = PageNumber(try readPage(path, first.rawValue).u32(OverflowLayout.nextOffset))
        var page = try readPage(path, second.rawValue)
        page.setU32(OverflowLayout.nextOffset, first.rawValue)
        try writePage(path, second.rawValue, page)

        try withDamaged(path) { p in
            let report = try p.check()
            XCTAssertTrue(
                report.problems.contains { $0.message.contains("overflow chain loops") }, "\(report.problems)")
            assertCorrupt(try p.read { try $0.get("t", bytes("big")) }, "get")
            // Freeing the chain would free the first page twice.
            assertCorrupt(try p.write { try $0.delete("t", bytes("big")) }, "delete")
            assertCorrupt(try p.write { try $0.put("t", bytes("big"), bytes("small")) }, "put over it")
        }
    }

    /// Frees pages: 300 records, then every one deleted but the first.
    func makeDatabaseWithFreePages() throws -> String {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        let p = try db.globalPartition()
        let value = [UInt8](repeating: 1, count: 300)
        try p.write { tx in for i in 0..<300 { try tx.put("t", bytes("k\(i)"), value) } }
        try p.write { tx in for i in 1..<300 { try tx.delete("t", bytes("k\(i)")) } }
        try db.close()
        XCTAssertGreaterThan(try header(path).freeCount, 1)
        return path
    }

    func testFreeListTrunkThatLoops() throws {
        let path = try makeDatabaseWithFreePages()
        var header = try header(path)
        let trunk = header.freelistHead
        var page = try readPage(path, trunk.rawValue)
        XCTAssertEqual(page.kind, PageKind.freelistTrunk.rawValue)
        // An empty trunk that links to itself: the next allocation would hand it out forever.
        page.setU32(FreelistLayout.countOffset, 0)
        page.setU32(FreelistLayout.nextOffset, trunk.rawValue)
        try writePage(path, trunk.rawValue, page)
        header.freeCount = 1
        try writePage(path, 0, header.encode())

        try withDamaged(path) { p in
            let report = try p.check()
            XCTAssertTrue(report.problems.contains { $0.message == "the free list loops" }, "\(report.problems)")
            assertCorrupt(try p.write { try $0.createTable("new") }, "allocate")
            try p.read { tx in XCTAssertEqual(try tx.tables(), ["t"]) }
        }
    }

    func testFreeCountZeroWithAFreeList() throws {
        let path = try makeDatabaseWithFreePages()
        var header = try header(path)
        header.freeCount = 0
        try writePage(path, 0, header.encode())
        try withDamaged(path) { p in
            XCTAssertFalse(try p.check().isClean)
            // Allocating from the free list decrements the count: it must throw, not trap.
            assertCorrupt(try p.write { try $0.createTable("new") }, "allocate")
        }
    }

    func testFreeCountAtThePageCount() throws {
        let path = try makeDatabase { try $0.put("t", bytes("big"), [UInt8](repeating: 3, count: 9000)) }
        var header = try header(path)
        header.freeCount = header.pageCount
        try writePage(path, 0, header.encode())
        try withDamaged(path) { p in
            XCTAssertFalse(try p.check().isClean)
            // Freeing the overflow pages increments the count past what can be free.
            assertCorrupt(try p.write { try $0.delete("t", bytes("big")) }, "free")
        }
    }

    func testCatalogCountZeroWithARecord() throws {
        let path = try makeDatabase { try $0.put("t", bytes("k"), bytes("v")) }
        var (catalog, index, info) = try catalogEntry(path, "t")
        XCTAssertEqual(info.count, 1)
        guard case .inline(let offset, _) = catalog.leafValue(index) else { return XCTFail("not inline") }
        catalog.setU64(offset + 8, 0)
        try writePage(path, 1, catalog)
        try withDamaged(path) { p in
            let report = try p.check()
            XCTAssertTrue(
                report.problems.contains { $0.message.contains("holds 1 records, its catalog entry says 0") },
                "\(report.problems)")
            // Deleting the record decrements the count: it must throw, not trap.
            assertCorrupt(try p.write { try $0.delete("t", bytes("k")) }, "delete")
            try p.read { tx in XCTAssertEqual(try tx.get("t", bytes("k")), bytes("v")) }
        }
    }
}
