import Foundation
import XCTest

@testable import Residency

/// Term files (spec/replication.md#term-files): what a host knows of a promotion survives a
/// restart exactly, and a damaged one is a typed error naming the file, never a silent default.
final class TermFileTests: XCTestCase {
    func testATermFileRoundTripsAndReplacesTheOldOne() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("terms-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        XCTAssertNil(try TermFile.read(database: folder, partition: "users"))
        try TermFile(epoch: 2, primary: "eu-2").write(database: folder, partition: "users")
        try TermFile(epoch: 3, primary: "eu-3").write(database: folder, partition: "users")
        XCTAssertEqual(try TermFile.read(database: folder, partition: "users"), TermFile(epoch: 3, primary: "eu-3"))
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: TermFile.path(database: folder, partition: "users") + ".tmp"))
    }

    func testEveryDamagedTermFileIsRefusedWithItsPath() throws {
        let bytes = TermFile(epoch: 7, primary: "us-1").encoded()
        var damaged: [[UInt8]] = [[], Array(bytes.prefix(10)), Array(bytes.dropLast())]
        for index in bytes.indices {
            var flipped = bytes
            flipped[index] ^= 0x01
            damaged.append(flipped)
        }
        for variant in damaged {
            XCTAssertThrowsError(try TermFile.decode(variant, path: "/x/terms/users")) { error in
                XCTAssertEqual((error as? ResidencyError)?.code, "term_file")
                XCTAssertTrue("\(error)".contains("/x/terms/users"), "\(error)")
            }
        }
    }
}
