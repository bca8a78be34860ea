import Foundation
import XCTest

@testable import PartitionDB

/// A resolver backed by a dictionary, for engine tests that do not need the Residency module.
final class FixedResolver: HomeRegionResolver, @unchecked Sendable {
    private let lock = NSLock()
    private var homes: [String: Region] = [:]

    func set(_ subject: String, _ region: Region) { lock.withLock { homes[subject] = region } }
    func homeRegion(of subject: SubjectID) throws -> Region? { lock.withLock { homes[subject.rawValue] } }
}

/// A fresh temporary directory, removed when the test ends.
func temporaryDirectory(_ test: XCTestCase, _ name: String = #function) throws -> String {
    let base = FileManager.default.temporaryDirectory.path + "/pdb-tests"
    try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
    let path = base + "/" + name.filter { $0.isLetter || $0.isNumber } + "-" + UUID().uuidString.prefix(8)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

/// A small deterministic generator (SplitMix64), so a seed reproduces a run.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

let eu = try! Region("eu")
let us = try! Region("us")
