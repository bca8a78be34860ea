import XCTest

@testable import PartitionDB

/// The slotted node layout: slot heads order keys as the keys do, searches fall back to whole
/// keys when heads tie, and a head that is not its key's is refused on read.
final class NodeTests: XCTestCase {
    /// Keys whose heads tie or that are shorter than a head: zero bytes, prefixes of each other,
    /// a shared four-byte prefix, and a long key.
    static let awkwardKeys: [[UInt8]] = [
        [0x61], [0x61, 0], [0x61, 0, 0], [0x61, 0, 0, 0], [0x61, 0, 0, 0, 0], [0x61, 0, 0, 1], [0x61, 1],
        [0], [0, 0], [0xFF], [0xFF, 0xFF, 0xFF, 0xFF], [0xFF, 0xFF, 0xFF, 0xFF, 0],
        bytes("abcd"), bytes("abcd0"), bytes("abcd1"), bytes("abcd10"), bytes("abce"), bytes("abc"),
        [UInt8](repeating: 0x62, count: 300),
    ]

    func testHeadsOrderAsKeysWhenTheyDiffer() {
        for a in NodeTests.awkwardKeys {
            for b in NodeTests.awkwardKeys {
                let (headA, headB) = (head(a), head(b))
                if headA < headB { XCTAssertLessThan(compareBytes(a, b), 0, "\(a) \(b)") }
                if headA > headB { XCTAssertGreaterThan(compareBytes(a, b), 0, "\(a) \(b)") }
            }
        }
    }

    func testLeafSearchFindsEveryKeyAmongTiedHeads() {
        var leaf = Page.emptyNode(kind: .leaf, size: 4096)
        var random = SeededGenerator(seed: 11)
        for key in NodeTests.awkwardKeys.shuffled(using: &random) {
            let (index, found) = leaf.leafSearch(key)
            XCTAssertFalse(found)
            XCTAssertTrue(leaf.insertCell(Page.leafCell(key: key, owner: [], value: key, overflow: nil), at: index))
        }
        XCTAssertNil(leaf.nodeStructureProblem())
        let stored = (0..<leaf.cellCount).map { leaf.leafKey($0) }
        XCTAssertEqual(stored, NodeTests.awkwardKeys.sorted { compareBytes($0, $1) < 0 })
        for (i, key) in stored.enumerated() {
            XCTAssertEqual(leaf.slotHead(i), head(key))
            let (index, found) = leaf.leafSearch(key)
            XCTAssertTrue(found, "\(key)")
            XCTAssertEqual(index, i)
            // A key just above this one (one more zero byte) is not there and goes right after it.
            let (above, foundAbove) = leaf.leafSearch(key + [0])
            XCTAssertEqual(foundAbove, stored.contains(key + [0]))
            XCTAssertEqual(above, i + 1)
        }
    }

    func testBranchSearchCountsSeparatorsAtOrBelowTheKey() {
        let separators = NodeTests.awkwardKeys.sorted { compareBytes($0, $1) < 0 }
        let cells = separators.enumerated().map {
            Page.branchCell(child: PageNumber(UInt32($0.offset + 10)), key: $0.element)
        }
        let branch = Page.node(kind: .branch, size: 4096, cells: cells, link: PageNumber(99))
        XCTAssertNil(branch.nodeStructureProblem())
        for probe in NodeTests.awkwardKeys + NodeTests.awkwardKeys.map({ $0 + [0] }) + [[], [0x61, 0, 0, 0, 0, 0]] {
            let expected = separators.filter { compareBytes($0, probe) <= 0 }.count
            XCTAssertEqual(branch.childIndex(for: probe), expected, "\(probe)")
        }
    }

    func testRemovalsAndRebuildsKeepHeadsWithTheirCells() {
        var leaf = Page.emptyNode(kind: .leaf, size: 4096)
        let keys = NodeTests.awkwardKeys.sorted { compareBytes($0, $1) < 0 }
        for (i, key) in keys.enumerated() {
            XCTAssertTrue(leaf.insertCell(Page.leafCell(key: key, owner: [], value: [], overflow: nil), at: i))
        }
        for index in [0, 5, 3, 9] { leaf.removeCell(at: index) }
        leaf.defragment()
        XCTAssertNil(leaf.nodeStructureProblem())
        for i in 0..<leaf.cellCount { XCTAssertEqual(leaf.slotHead(i), head(leaf.leafKey(i))) }
    }

    func testAHeadThatIsNotItsKeysIsRefusedOnRead() throws {
        var leaf = Page.emptyNode(kind: .leaf, size: 4096)
        for (i, key) in [bytes("apple"), bytes("melon"), bytes("peach")].enumerated() {
            XCTAssertTrue(leaf.insertCell(Page.leafCell(key: key, owner: [], value: [1, 2], overflow: nil), at: i))
        }
        // Slot 1's head says "zzzz": a search for "pear" would go the wrong way.
        leaf.setU32(NodeLayout.slot(1) + NodeLayout.slotHeadOffset, head(bytes("zzzz")).byteSwapped)
        leaf.seal(number: PageNumber(7))
        XCTAssertEqual(leaf.nodeStructureProblem(), "slot 1 holds a head that is not its key's")
        XCTAssertThrowsError(try Pager.verify(leaf, number: PageNumber(7), file: "f.pdb")) { error in
            guard case .corruptPage(let file, let page, let reason) = error as? PartitionDBError else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(file, "f.pdb")
            XCTAssertEqual(page, 7)
            XCTAssertTrue(reason.contains("head"), reason)
        }
    }

    /// Through the public API: records under awkward keys in a tree deep enough to have branches.
    func testTablesWithTiedHeadsStayInOrder() throws {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        let p = try db.globalPartition()
        var expected: [[UInt8]] = []
        try p.write { tx in
            for prefix in NodeTests.awkwardKeys {
                for n in 0..<40 {
                    let key = prefix + [UInt8](repeating: 0, count: n % 3) + [UInt8(n)]
                    try tx.put("t", key, [UInt8](repeating: UInt8(n), count: 90))
                    expected.append(key)
                }
            }
        }
        expected = Set(expected).sorted { compareBytes($0, $1) < 0 }
        try p.read { tx in
            var scanned: [[UInt8]] = []
            try tx.scan("t") { record in
                scanned.append(record.key)
                return true
            }
            XCTAssertEqual(scanned, expected)
            for key in expected { XCTAssertNotNil(try tx.get("t", key)) }
        }
        XCTAssertTrue(try p.check().isClean)
        try db.close()
    }

    private func head(_ key: [UInt8]) -> UInt32 { key.withUnsafeBytes { NodeLayout.head(of: $0) } }
}
