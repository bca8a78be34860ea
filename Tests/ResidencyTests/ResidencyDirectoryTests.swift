import Foundation
import PartitionDB
import Residency
import XCTest

final class ResidencyDirectoryTests: XCTestCase {
    var path = ""

    override func setUpWithError() throws {
        path = FileManager.default.temporaryDirectory.path + "/pdb-residency-" + UUID().uuidString
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: path) }

    func testAssignHomeIsAConditionalCreate() throws {
        let db = try Database.create(at: path, region: try Region("eu"))
        let directory = try ResidencyDirectory(database: db)
        let alice = try SubjectID("alice")
        XCTAssertNil(try directory.home(of: alice))
        XCTAssertTrue(try directory.assignHome(alice, to: try Region("eu")))
        XCTAssertFalse(try directory.assignHome(alice, to: try Region("eu")), "the same home again is a no-op")
        XCTAssertThrowsError(try directory.assignHome(alice, to: try Region("us"))) {
            XCTAssertEqual($0 as? ResidencyError, .alreadyRegistered(subject: "alice", home: "eu"))
        }
        XCTAssertEqual(try directory.home(of: alice), try Region("eu"))
        XCTAssertThrowsError(try directory.assignHome(try SubjectID("bob"), to: .global))
        try db.close()
        // The directory survives a reopen.
        let again = try Database.open(at: path, region: try Region("eu"))
        XCTAssertEqual(try ResidencyDirectory(database: again).home(of: alice), try Region("eu"))
        try again.close()
    }

    func testTheDirectoryIsTheEnginesResolver() throws {
        let db = try Database.create(at: path, region: try Region("eu"))
        let directory = try ResidencyDirectory(database: db)
        try directory.assignHome(try SubjectID("alice"), to: try Region("eu"))
        try directory.assignHome(try SubjectID("bob"), to: try Region("us"))
        let users = try db.createPartition("users")
        try users.write { try $0.put("p", Array("a".utf8), Array("x".utf8), owner: try SubjectID("alice")) }
        XCTAssertThrowsError(
            try users.write { try $0.put("p", Array("b".utf8), Array("y".utf8), owner: try SubjectID("bob")) }
        ) {
            XCTAssertEqual($0 as? PartitionDBError, .crossRegionWrite(owner: "bob", home: "us", partition: "users"))
        }
        try db.close()
    }

    func testConcurrentAssignmentsHaveOneWinner() throws {
        let db = try Database.create(at: path, region: try Region("eu"))
        let directory = try ResidencyDirectory(database: db)
        let regions = try ["eu", "us", "ap", "in"].map { try Region($0) }
        let results = ResultLog()
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            for n in 0..<50 {
                let subject = try! SubjectID("user-\(n)")
                do {
                    let created = try directory.assignHome(subject, to: regions[i % regions.count])
                    results.add(n, created ? "created" : "same")
                } catch ResidencyError.alreadyRegistered {
                    results.add(n, "already")
                } catch {
                    results.add(n, "error \(error)")
                }
            }
        }
        for n in 0..<50 {
            let outcomes = results.outcomes(n)
            XCTAssertEqual(outcomes.filter { $0 == "created" }.count, 1, "subject \(n): \(outcomes)")
            XCTAssertFalse(outcomes.contains { $0.hasPrefix("error") }, "\(outcomes)")
        }
        XCTAssertEqual(try directory.entries().count, 50)
        try db.close()
    }
}

final class ResultLog: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Int: [String]] = [:]
    func add(_ n: Int, _ outcome: String) { lock.withLock { results[n, default: []].append(outcome) } }
    func outcomes(_ n: Int) -> [String] { lock.withLock { results[n] ?? [] } }
}

extension ResidencyDirectoryTests {
    /// `pdb check` verifies that every directory entry decodes: a subject id and a regional home.
    func testVerifyReportsEntriesThatDoNotDecode() throws {
        let db = try Database.create(at: path, region: try Region("eu"))
        defer { try? db.close() }
        let directory = try ResidencyDirectory(database: db)
        try directory.assignHome(try SubjectID("alice"), to: try Region("eu"))
        let global = try db.globalPartition()
        XCTAssertEqual(try ResidencyDirectory.verify(global), [])
        try global.writeReserved { tx in
            try tx.put(ResidencyDirectory.table, Array("bob".utf8), Array("not a region!".utf8))
            try tx.put(ResidencyDirectory.table, Array("carol".utf8), Array("global".utf8))
            try tx.put(ResidencyDirectory.table, [0xFF, 0xFE], Array("eu".utf8))
        }
        let problems = try ResidencyDirectory.verify(global)
        XCTAssertEqual(problems.count, 3, "\(problems)")
        XCTAssertTrue(problems.contains { $0.contains("\"bob\"") && $0.contains("home region") }, "\(problems)")
        XCTAssertTrue(problems.contains { $0.contains("not UTF-8") }, "\(problems)")
    }
}
