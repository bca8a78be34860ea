import XCTest

@testable import PartitionDB

/// `ChangedPages` against a dictionary: pages on both sides of the snapshot's end (the map and
/// the array), set, replaced, removed, changed in place, borrowed and handed over.
final class ChangedPagesTests: XCTestCase {
    /// A page whose bytes name `tag`, so a wrong page is told from the right one.
    private func page(_ tag: UInt32) -> Page {
        var page = Page(size: 64)
        page.setU32(8, tag)
        return page
    }

    func testAgreesWithADictionaryAcrossTheSnapshotEnd() {
        let firstAdded: UInt32 = 1000
        var pages = ChangedPages(firstAdded: firstAdded)
        var model: [UInt32: UInt32] = [:]
        var random = SeededGenerator(seed: 5)
        for step in 0..<20_000 {
            // Numbers around the boundary: old pages, added pages, and added pages far out.
            let number = UInt32.random(in: 1..<(firstAdded + 3000), using: &random)
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<5:
                pages[number] = page(UInt32(step))
                model[number] = UInt32(step)
            case 5..<7:
                pages[number] = nil
                model[number] = nil
            case 7..<9:
                let changed = pages.modify(number) { page -> UInt32 in
                    page.setU32(8, page.u32(8) &+ 1)
                    return page.u32(8)
                }
                if let old = model[number] {
                    XCTAssertEqual(changed, old &+ 1)
                    model[number] = old &+ 1
                } else {
                    XCTAssertNil(changed)
                }
            default:
                XCTAssertEqual(pages[number]?.u32(8), model[number], "page \(number)")
                XCTAssertEqual(pages.borrowedPage(number)?.u32(8), model[number], "page \(number)")
            }
            XCTAssertEqual(pages.count, model.count)
            XCTAssertEqual(pages.existingCount, model.keys.filter { $0 < firstAdded }.count)
        }
        XCTAssertEqual(Set(pages.allNumbers), Set(model.keys))
        XCTAssertEqual(pages.allNumbers.count, model.count)
        let taken = pages.takePages()
        XCTAssertEqual(taken.count, model.count)
        for (number, page) in taken { XCTAssertEqual(page.u32(8), model[number.rawValue], "page \(number)") }
        XCTAssertEqual(pages.count, 0)
        XCTAssertTrue(pages.allNumbers.isEmpty)
        XCTAssertNil(pages[firstAdded])
    }

    func testChangesInPlaceDoNotCopyAddedPages() {
        var pages = ChangedPages(firstAdded: 10)
        pages[12] = page(1)
        let before = pages.borrowedPage(12)!.base
        pages.modify(12) { $0.setU32(8, 2) }
        XCTAssertEqual(pages.borrowedPage(12)!.base, before)
        XCTAssertEqual(pages[12]?.u32(8), 2)
    }
}
