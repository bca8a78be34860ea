import Foundation
import Logging
import PartitionDB
import Residency
import XCTest

/// `ClusterHost` as a `HomeAssigning` (spec/replication.md#write-forwarding): a host that only
/// replicates the directory, run in this process as an application embedding PartitionDB runs
/// it, forwards assignments to the directory's primary (a real `pdb serve`), which decides each
/// once; the call returns when the local copy holds the answer.
final class HomeAssignmentTests: PDBTestCase {
    private struct NoCommands: CommandRunning {
        func run(arguments: [String], input: [UInt8], host: ClusterHost) async -> CommandResult {
            CommandResult(stdout: [], stderr: [], status: 1)
        }
    }

    func testAReplicaHostForwardsAssignmentsAndReadsThemBackAtOnce() async throws {
        let cluster = root.appendingPathComponent("cluster").path
        let basePort = 20_000 + Int.random(in: 0..<400) * 100 + 60
        assertExit(try pdb("cluster", "init", cluster, "--regions", "eu:1,us:1", "--base-port", "\(basePort)"), 0)
        let primary = try Self.startServe(config: cluster + "/hosts/eu-1/config.json")
        let configuration = try HostConfiguration.load(cluster + "/hosts/us-1/config.json")
        let database = try Database.openAsCreated(at: configuration.dataDirectory)
        var logger = Logger(label: "test.us-1")
        logger.logLevel = .error
        let host = try ClusterHost(
            configuration: configuration, database: database, commands: NoCommands(), logger: logger)
        let running = Task { try? await host.run(onListening: { _ in }) }
        defer {
            kill(primary.processIdentifier, SIGKILL)
            primary.waitUntilExit()
        }
        let directory = try ResidencyDirectory(database: database)
        let alice = try SubjectID("alice")
        let eu = try Region("eu")
        let us = try Region("us")

        // The primary may still be starting: the first assignment retries its connection.
        var created: Bool? = nil
        for _ in 0..<300 where created == nil {
            created = try? await host.assignHome(alice, to: eu)
            if created == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        XCTAssertEqual(created, true)
        XCTAssertEqual(try directory.home(of: alice), eu, "the local copy holds the home when the call returns")
        let again = try await host.assignHome(alice, to: eu)
        XCTAssertFalse(again, "the same home again is a no-op")
        do {
            _ = try await host.assignHome(alice, to: us)
            XCTFail("a second home was given")
        } catch ResidencyError.alreadyRegistered(let subject, let home) {
            XCTAssertEqual(subject, "alice")
            XCTAssertEqual(home, "eu")
        }

        // The same 50 subjects assigned at once here (eu) and through the primary (us): one
        // winner each, and both copies end with it.
        let subjects = try (0..<50).map { try SubjectID("s\($0)") }
        let address = "pdb://\(try HostConfiguration.load(cluster + "/hosts/eu-1/config.json").listen)"
        let tls = cluster + "/operator"
        let binary = Self.binary.path
        let throughPrimary = Task.detached {
            subjects.map { subject -> Int32 in
                let process = Process()
                process.executableURL = URL(fileURLWithPath: binary)
                process.arguments = ["home", "set", address, subject.rawValue, "us", "--tls", tls]
                process.standardOutput = FileHandle.nullDevice
                process.standardError = FileHandle.nullDevice
                guard (try? process.run()) != nil else { return -1 }
                process.waitUntilExit()
                return process.terminationStatus
            }
        }
        var here: [Bool?] = []
        for subject in subjects {
            do {
                here.append(try await host.assignHome(subject, to: eu))
            } catch ResidencyError.alreadyRegistered {
                here.append(nil)
            }
        }
        let there = await throughPrimary.value
        for (i, subject) in subjects.enumerated() {
            XCTAssertEqual((here[i] == true ? 1 : 0) + (there[i] == 0 ? 1 : 0), 1, "\(subject): one winner")
            XCTAssertTrue(there[i] == 0 || there[i] == 1, "home set exited \(there[i])")
        }
        // The replica's copy catches up with the primary's assignments too.
        let deadline = Date().addingTimeInterval(30)
        func homes() throws -> [String: String] {
            Dictionary(uniqueKeysWithValues: try directory.entries().map { ($0.subject.rawValue, $0.home.name) })
        }
        while try homes().count < subjects.count + 1, Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let final = try homes()
        for (i, subject) in subjects.enumerated() {
            XCTAssertEqual(final[subject.rawValue], here[i] == true ? "eu" : "us", subject.rawValue)
        }
        let remote = try pdb("home", "get", address, "s0", "--tls", tls)
        assertExit(remote, 0)
        XCTAssertEqual(remote.stdout, "\(final["s0"] ?? "?")\n")

        host.stop()
        _ = await running.value
        await host.shutdown()
        try database.close()
    }
}
