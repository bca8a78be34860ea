import Foundation
import PartitionDB
import XCTest

@testable import Auth

/// A fresh temporary directory, removed when the test ends.
func temporaryDirectory(_ test: XCTestCase, _ name: String = #function) throws -> String {
    let base = FileManager.default.temporaryDirectory.path + "/pdb-auth-tests"
    try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
    let path = base + "/" + name.filter { $0.isLetter || $0.isNumber } + "-" + UUID().uuidString.prefix(8)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

/// The files under `directory` (recursively) whose bytes contain `needle`.
func filesContaining(_ needle: String, under directory: String, bytes: [UInt8]? = nil) throws -> [String] {
    let pattern = bytes ?? Array(needle.utf8)
    var found: [String] = []
    let enumerator = FileManager.default.enumerator(atPath: directory)
    while let relative = enumerator?.nextObject() as? String {
        let path = directory + "/" + relative
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
            let data = FileManager.default.contents(atPath: path)
        else { continue }
        if data.range(of: Data(pattern)) != nil { found.append(relative) }
    }
    return found
}

/// A clock the test moves by hand.
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current = Date(timeIntervalSince1970: 1_800_000_000)
    var now: Date { lock.withLock { current } }
    func advance(_ seconds: TimeInterval) { lock.withLock { current += seconds } }
}

/// Cheap Argon2id parameters for flow tests (the cost is the same code path; OWASP's defaults
/// run in the tests that are about them).
let cheapParameters = PasswordParameters(memoryKiB: 256, iterations: 1, parallelism: 1)

let testKey = try! SubjectKey(bytes: Array(repeating: 7, count: 32))
let eu = try! Region("eu")
let us = try! Region("us")
