import Foundation
import XCTest

@testable import PartitionDB

/// Opening refuses a partition file shorter than its header says with `truncated`
/// (`PartitionDBError.unexpectedEndOfFile`), the code spec/cli.md documents.
final class PartitionFileTests: XCTestCase {
    /// A closed database with records in its global partition; returns its directory.
    func makeDatabase() throws -> String {
        let path = try temporaryDirectory(self)
        let db = try Database.create(at: path, region: eu)
        try db.globalPartition().write { tx in
            for i in 0..<300 { try tx.put("t", bytes("k\(i)"), [UInt8](repeating: 1, count: 200)) }
        }
        try db.close()
        return path
    }

    func truncate(_ file: String, to length: UInt64) throws {
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: file))
        try handle.truncate(atOffset: length)
        try handle.close()
    }

    func assertTruncated(_ path: String, offset: UInt64, line: UInt = #line) throws {
        let db = try Database.open(at: path, region: eu)
        defer { try? db.close() }
        XCTAssertThrowsError(try db.globalPartition(), line: line) { error in
            guard case .unexpectedEndOfFile(let file, let at) = error as? PartitionDBError else {
                return XCTFail("\(error)", line: line)
            }
            XCTAssertEqual(file, path + "/global.pdb", line: line)
            XCTAssertEqual(at, offset, line: line)
            XCTAssertEqual((error as? PartitionDBError)?.code, "truncated", line: line)
        }
    }

    func testFileShorterThanItsHeaderPage() throws {
        let path = try makeDatabase()
        try truncate(path + "/global.pdb", to: 1000)
        // With the empty log a clean close leaves, and without any log.
        try assertTruncated(path, offset: 4096)
        try? FileManager.default.removeItem(atPath: path + "/global.pdb-log")
        try assertTruncated(path, offset: 4096)
    }

    func testPageCountBeyondTheFileAndItsLog() throws {
        let path = try makeDatabase()
        let file = path + "/global.pdb"
        let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: file)[.size] as? UInt64)
        XCTAssertGreaterThan(size, 4 * 4096)
        try truncate(file, to: size - 4096)
        try assertTruncated(path, offset: size)
    }
}
