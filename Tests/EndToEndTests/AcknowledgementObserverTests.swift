import Foundation
import Logging
import PartitionDB
import Residency
import Synchronization
import XCTest

/// `ClusterHost.onAcknowledgement`: a primary run in this process, as an application embedding
/// PartitionDB runs it (the replication benchmark does), and a real `pdb serve` replica.
final class AcknowledgementObserverTests: PDBTestCase {
    private struct NoCommands: CommandRunning {
        func run(arguments: [String], input: [UInt8], host: ClusterHost) async -> CommandResult {
            CommandResult(stdout: [], stderr: [], status: 1)
        }
    }

    func testThePrimarySeesEveryReplicaAcknowledgementUntilTheObserverIsRemoved() throws {
        let cluster = root.appendingPathComponent("cluster").path
        let basePort = 20_000 + Int.random(in: 0..<400) * 100 + 50
        assertExit(try pdb("cluster", "init", cluster, "--regions", "eu:2", "--base-port", "\(basePort)"), 0)
        let configuration = try HostConfiguration.load(cluster + "/hosts/eu-1/config.json")
        let database = try Database.openAsCreated(at: configuration.dataDirectory)
        defer { try? database.close() }
        var logger = Logger(label: "test.primary")
        logger.logLevel = .error
        let host = try ClusterHost(
            configuration: configuration, database: database, commands: NoCommands(), logger: logger)
        let seen = Mutex<[Acknowledgement]>([])
        host.onAcknowledgement { acknowledgement in seen.withLock { $0.append(acknowledgement) } }
        let listening = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        Task {
            try? await host.run(onListening: { _ in listening.signal() })
            finished.signal()
        }
        XCTAssertEqual(listening.wait(timeout: .now() + 30), .success)

        let replica = try Self.startServe(config: cluster + "/hosts/eu-2/config.json")
        defer {
            if replica.isRunning {
                kill(replica.processIdentifier, SIGKILL)
                replica.waitUntilExit()
            }
            host.stop()
            _ = finished.wait(timeout: .now() + 30)
            let done = DispatchSemaphore(value: 0)
            Task {
                await host.shutdown()
                done.signal()
            }
            _ = done.wait(timeout: .now() + 30)
        }

        let partition = try database.globalPartition()
        for i in 0..<20 {
            try partition.write(durability: .durable) { tx in try tx.put("t", Array("k\(i)".utf8), Array("v".utf8)) }
        }
        let last = partition.lastLSN
        func acknowledged(_ lsn: LSN) -> Bool {
            seen.withLock { $0.contains { $0.partition == "global" && $0.durableLSN >= lsn } }
        }
        let deadline = Date().addingTimeInterval(60)
        while !acknowledged(last) && Date() < deadline { usleep(10_000) }
        XCTAssertTrue(acknowledged(last), "the replica never acknowledged LSN \(last)")

        let global = seen.withLock { $0 }.filter { $0.partition == "global" }
        XCTAssertEqual(Set(global.map(\.replica)), ["eu-2"])
        XCTAssertEqual(global.map(\.durableLSN), global.map(\.durableLSN).sorted(), "LSNs of one stream went down")
        XCTAssertLessThanOrEqual(global.last!.durableLSN, last)
        let status = host.status().partitions.first { $0.name == "global" }?.replicas?.first
        XCTAssertEqual(status?.durableLSN, last.rawValue, "the observer ran before status() counted the LSN")
        // The replica's other partition (users, joined by snapshot) is acknowledged too.
        XCTAssertTrue(seen.withLock { $0.contains { $0.partition == "users" && $0.replica == "eu-2" } })

        // Removed: later acknowledgements still count in status() but call nothing.
        host.onAcknowledgement(nil)
        let count = seen.withLock { $0.count }
        try partition.write(durability: .durable) { tx in try tx.put("t", Array("after".utf8), Array("v".utf8)) }
        let after = partition.lastLSN.rawValue
        let statusDeadline = Date().addingTimeInterval(60)
        while host.status().partitions.first(where: { $0.name == "global" })?.replicas?.first?.durableLSN != after,
            Date() < statusDeadline
        {
            usleep(10_000)
        }
        XCTAssertEqual(host.status().partitions.first { $0.name == "global" }?.replicas?.first?.durableLSN, after)
        XCTAssertEqual(seen.withLock { $0.count }, count)
    }
}
