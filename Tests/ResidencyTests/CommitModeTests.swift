import PartitionDB
import XCTest

@testable import Residency

/// Commit modes (spec/replication.md#commit-modes): their configuration, refused when it cannot
/// be met, and the waits of quorum commits, released by the acknowledgements that cover them.
final class CommitModeTests: XCTestCase {
    func testCommitModesParseAndPrintAsInTheConfiguration() {
        XCTAssertEqual(CommitMode("async"), .async)
        XCTAssertEqual(CommitMode("quorum:2"), .quorum(2))
        for bad in ["", "sync", "quorum", "quorum:", "quorum:0", "quorum:-1", "quorum:01", "quorum: 1", "QUORUM:1"] {
            XCTAssertNil(CommitMode(bad), bad)
        }
        XCTAssertEqual(CommitMode.quorum(3).description, "quorum:3")
        XCTAssertEqual(CommitMode(CommitMode.async.description), .async)
    }

    /// eu-1's configuration with `partitions` and any top-level keys of `extra`.
    private func configuration(partitions: [String: Any], extra: [String: Any] = [:]) -> [String: Any] {
        var root: [String: Any] = [
            "version": 1, "host": "eu-1", "region": "eu", "data_directory": "data", "tls_directory": "tls",
            "listen": "127.0.0.1:7100",
            "hosts": [
                "eu-1": ["region": "eu", "address": "127.0.0.1:7100"],
                "eu-2": ["region": "eu", "address": "127.0.0.1:7101"],
                "us-1": ["region": "us", "address": "127.0.0.1:7102"],
            ],
            "partitions": partitions,
        ]
        root.merge(extra) { _, new in new }
        return root
    }

    private func refusal(_ root: [String: Any]) -> (key: String, reason: String)? {
        do {
            _ = try HostConfiguration.parse(root, file: "/etc/pdb/config.json")
            return nil
        } catch ResidencyError.configuration(_, let key, let reason) {
            return (key, reason)
        } catch {
            XCTFail("\(error)")
            return nil
        }
    }

    func testTheConfigurationNamesEachPartitionsModeAndRefusesOneItCannotMeet() throws {
        let global: [String: Any] = ["primary": "eu-1", "replicas": ["eu-2", "us-1"]]
        let parsed = try HostConfiguration.parse(
            configuration(
                partitions: ["global": global, "users": ["primary": "eu-1", "replicas": ["eu-2"]]],
                extra: ["quorum_timeout_ms": 250]),
            file: "/etc/pdb/config.json")
        XCTAssertEqual(parsed.placement(of: "global")?.commitMode, .quorum(1), "the directory's default")
        XCTAssertEqual(parsed.placement(of: "users")?.commitMode, .async)
        XCTAssertEqual(parsed.quorumTimeoutMilliseconds, 250)
        let lonely = try HostConfiguration.parse(
            configuration(partitions: ["global": ["primary": "eu-1", "replicas": [String]()]]),
            file: "/etc/pdb/config.json")
        XCTAssertEqual(lonely.placement(of: "global")?.commitMode, .async, "a directory without replicas")

        // What `cluster init` writes reads back the same.
        var written = parsed
        written.partitions[1].commitMode = .quorum(1)
        let json = written.json(dataDirectory: "data", tlsDirectory: "tls")
        let reread = try HostConfiguration.parse(
            try JSONSerialization.jsonObject(with: Data(json.utf8)), file: "/etc/pdb/config.json")
        XCTAssertEqual(reread.partitions.map(\.commitMode), [.quorum(1), .quorum(1)])
        XCTAssertEqual(reread.quorumTimeoutMilliseconds, 250)

        let tooMany = refusal(
            configuration(partitions: [
                "global": global, "users": ["primary": "eu-1", "replicas": ["eu-2"], "commit_mode": "quorum:2"],
            ]))
        XCTAssertEqual(tooMany?.key, "partitions.users.commit_mode")
        XCTAssertTrue(
            tooMany?.reason.contains("the partition has 1 replicas") ?? false, "\(String(describing: tooMany))")
        let bad = refusal(
            configuration(partitions: ["global": global.merging(["commit_mode": "sync"]) { $1 }]))
        XCTAssertEqual(bad?.key, "partitions.global.commit_mode")
        let number = refusal(configuration(partitions: ["global": global.merging(["commit_mode": 1]) { $1 }]))
        XCTAssertEqual(number?.key, "partitions.global.commit_mode")
        for timeout in [0, 5, 600_001] {
            XCTAssertEqual(
                refusal(configuration(partitions: ["global": global], extra: ["quorum_timeout_ms": timeout]))?.key,
                "quorum_timeout_ms")
        }
    }

    func testAQuorumWaitEndsWhenEnoughReplicasAcknowledgedItOrALaterCommit() async {
        let waiters = QuorumWaiters(needed: 2)
        async let first = waiters.wait(for: 10, timeout: .seconds(30))
        async let second = waiters.wait(for: 12, timeout: .seconds(30))
        // Each wait registers before the acknowledgements that end it are counted.
        while waiters.waitCount < 2 { await Task.yield() }
        waiters.acknowledged(replica: "eu-2", durableLSN: 12)
        XCTAssertEqual(waiters.waitCount, 2, "one replica of two releases nothing")
        waiters.acknowledged(replica: "eu-3", durableLSN: 11)
        let firstDone = await first
        XCTAssertTrue(firstDone)
        XCTAssertEqual(waiters.waitCount, 1)
        waiters.acknowledged(replica: "eu-3", durableLSN: 5)
        XCTAssertEqual(waiters.acknowledgements(of: 11), 2, "an older acknowledgement lowers nothing")
        waiters.acknowledged(replica: "eu-3", durableLSN: 12)
        let secondDone = await second
        XCTAssertTrue(secondDone)
        let covered = await waiters.wait(for: 12, timeout: .milliseconds(1))
        XCTAssertTrue(covered, "already acknowledged: no wait")
        XCTAssertEqual(waiters.waitCount, 0)
    }

    func testAQuorumWaitEndsFalseAtItsTimeoutAndWhenTheHostStops() async {
        let waiters = QuorumWaiters(needed: 1)
        let start = ContinuousClock.now
        let timedOut = await waiters.wait(for: 3, timeout: .milliseconds(200))
        XCTAssertFalse(timedOut)
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(200))
        XCTAssertEqual(waiters.waitCount, 0)

        async let stopped = waiters.wait(for: 4, timeout: .seconds(30))
        while waiters.waitCount < 1 { await Task.yield() }
        waiters.releaseAll()
        let stoppedResult = await stopped
        XCTAssertFalse(stoppedResult)
        let afterStop = await waiters.wait(for: 4, timeout: .seconds(30))
        XCTAssertFalse(afterStop, "a stopped host waits for nothing")
        waiters.acknowledged(replica: "eu-2", durableLSN: 4)
        let acknowledged = await waiters.wait(for: 4, timeout: .seconds(30))
        XCTAssertTrue(acknowledged, "an acknowledgement is evidence even after a stop")
    }
}
