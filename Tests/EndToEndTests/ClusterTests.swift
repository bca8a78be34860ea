import Foundation
import NIOPosix
import PartitionDB
import Residency
import XCTest

/// Hosts as real `pdb serve` processes on loopback ports, laid out by `pdb cluster init`, talked
/// to through `pdb … pdb://` over mutual TLS (spec/replication.md).
final class ClusterTests: ClusterTestCase {
    func testReplicasConvergeAndRefuseWritesAndBorders() throws {
        try layOut()
        for host in ["eu-1", "eu-2", "us-1"] { try start(host) }
        assertExit(try remote("home set", "eu-1", "alice", "eu"), 0)
        assertExit(try remote("home set", "eu-1", "bob", "us"), 0)
        let marker = "MARKER-eu-\(UUID().uuidString)"
        let lines = (0..<2_000).map {
            #"{"op":"put","table":"t","key":"k\#($0)","value":"\#(marker)-\#($0)","owner":"alice"}"#
        }
        assertExit(
            try remote("apply", "eu-1", "users", stdin: (lines + [#"{"op":"commit"}"#]).joined(separator: "\n")), 0)
        for i in 0..<20 {
            assertExit(try remote("put", "eu-1", "users", "t", "small\(i)", "v\(i)", "--owner", "alice"), 0)
        }
        let removal = (0..<1_500).map { #"{"op":"del","table":"t","key":"k\#($0)"}"# }
        assertExit(
            try remote("apply", "eu-1", "users", stdin: (removal + [#"{"op":"commit"}"#]).joined(separator: "\n")), 0)
        try assertConverges("users", primary: "eu-1", replicas: ["eu-2"])
        try assertConverges("global", primary: "eu-1", replicas: ["eu-2", "us-1"])

        // Reads on a replica answer from its copy; its writes go to the primary and are read
        // back on the replica as soon as they return (spec/replication.md#write-forwarding).
        let read = try remote("get", "eu-2", "users", "t", "k1999", "--json")
        assertExit(read, 0)
        XCTAssertEqual(try read.object()["value"] as? String, "\(marker)-1999")
        for i in 0..<10 {
            assertExit(try remote("put", "eu-2", "users", "t", "forwarded\(i)", "y\(i)", "--owner", "alice"), 0)
            let own = try remote("get", "eu-2", "users", "t", "forwarded\(i)")
            assertExit(own, 0)
            XCTAssertEqual(own.stdout, "y\(i)\n", "a forwarded write reads back on the host that forwarded it")
        }
        assertExit(try remote("home set", "us-1", "carol", "us"), 0)
        XCTAssertEqual(try remote("home get", "us-1", "carol").stdout, "us\n")
        let taken = try remote("home set", "us-1", "alice", "us", "--json")
        XCTAssertEqual(taken.status, 1)
        XCTAssertEqual(try taken.errorCode(), "already_registered", "the directory's primary decides, once")
        // A border still holds: us-1 does not hold users, so it has nothing to forward it to.
        let foreign = try remote("put", "us-1", "users", "t", "x", "y", "--owner", "alice", "--json")
        XCTAssertEqual(foreign.status, 1)

        // The directory crossed to us-1; eu's records did not.
        let home = try remote("home get", "us-1", "alice", "--json")
        assertExit(home, 0)
        XCTAssertEqual(try home.object()["home"] as? String, "eu")
        stop("us-1")
        XCTAssertFalse(
            try Self.filesContain("\(cluster)/hosts/us-1", marker), "a marker of eu's partition reached us-1")
        XCTAssertTrue(try Self.filesContain("\(cluster)/hosts/eu-2", marker))

        let (users, replica) = try usersStatus(on: "eu-1")
        XCTAssertEqual(users["role"] as? String, "primary")
        XCTAssertEqual(replica["host"] as? String, "eu-2")
        XCTAssertEqual(replica["durable_lsn"] as? Int, users["last_lsn"] as? Int)
    }

    func testKilledReplicaCatchesUpAndASecondServeIsLockedOut() throws {
        try layOut()
        try start("eu-1")
        try start("eu-2")
        assertExit(try remote("home set", "eu-1", "alice", "eu"), 0)
        for i in 0..<30 { assertExit(try remote("put", "eu-1", "users", "t", "a\(i)", "v\(i)", "--owner", "alice"), 0) }
        try assertConverges("users", primary: "eu-1", replicas: ["eu-2"])
        stop("eu-2", signal: SIGKILL)
        for i in 0..<30 { assertExit(try remote("put", "eu-1", "users", "t", "b\(i)", "v\(i)", "--owner", "alice"), 0) }
        try start("eu-2")
        try assertConverges("users", primary: "eu-1", replicas: ["eu-2"])
        // The shipped log is kept on disk: a primary that restarts (here while the replica is
        // down and behind) still streams the replica what it missed, without a snapshot.
        stop("eu-2", signal: SIGKILL)
        for i in 0..<10 { assertExit(try remote("put", "eu-1", "users", "t", "c\(i)", "v\(i)", "--owner", "alice"), 0) }
        stop("eu-1")
        let check = try pdb("check", "\(cluster)/hosts/eu-1/data", "users", "--json")
        assertExit(check, 0)
        let report = try XCTUnwrap((try check.object()["partitions"] as? [[String: Any]])?.first)
        let retained = try XCTUnwrap(report["retained_log"] as? [String: Any], "\(report)")
        XCTAssertGreaterThanOrEqual(retained["segments"] as? Int ?? 0, 1)
        try start("eu-1")
        try start("eu-2")
        try assertConverges("users", primary: "eu-1", replicas: ["eu-2"])
        let (_, replica) = try usersStatus(on: "eu-1")
        XCTAssertEqual(replica["snapshots_sent"] as? Int, 0, "\(replica)")
        // A primary killed right after its last commits (their change sets perhaps still queued
        // for the segments, or written and not synced) fills the gap from the partition's own
        // log when it starts again: still no snapshot.
        stop("eu-2", signal: SIGKILL)
        for i in 0..<10 { assertExit(try remote("put", "eu-1", "users", "t", "d\(i)", "v\(i)", "--owner", "alice"), 0) }
        stop("eu-1", signal: SIGKILL)
        try start("eu-1")
        try start("eu-2")
        try assertConverges("users", primary: "eu-1", replicas: ["eu-2"])
        let (_, afterKill) = try usersStatus(on: "eu-1")
        XCTAssertEqual(afterKill["snapshots_sent"] as? Int, 0, "\(afterKill)")
        // A second serve on the same data directory is refused by the database's lock.
        let second = try run(["serve", "--config", "\(cluster)/hosts/eu-2/config.json"], timeout: 30)
        XCTAssertEqual(second.status, 1)
        XCTAssertTrue(second.stderr.contains("locked by process"), second.stderr)
    }

    func testPeersWithoutTheRightCertificateAreRefused() throws {
        try layOut()
        try start("eu-1")
        let target = try XCTUnwrap(HostAddress(String(try address("eu-1").dropFirst("pdb://".count))))
        // An operator certificate asking to replicate.
        XCTAssertEqual(try hello(target, tls: operatorTLS, partition: "users"), "not_a_host")
        // A host certificate of another region asking for eu's partition: refused before a byte.
        let foreign = root.appendingPathComponent("foreign").path
        try ClusterCertificates.issue(
            .host(id: "eu-2", region: try Region("us")), authority: "\(cluster)/ca", into: foreign)
        XCTAssertEqual(try hello(target, tls: foreign, partition: "users"), "border")
        // A certificate of another CA, and an expired one: no TLS session at all.
        let otherCA = root.appendingPathComponent("other-ca").path
        try ClusterCertificates.createAuthority(in: otherCA)
        let stranger = root.appendingPathComponent("stranger").path
        try ClusterCertificates.issue(.host(id: "eu-2", region: try Region("eu")), authority: otherCA, into: stranger)
        XCTAssertEqual(try hello(target, tls: stranger, partition: "users"), "connection")
        let expired = root.appendingPathComponent("expired").path
        try ClusterCertificates.issue(
            .host(id: "eu-2", region: try Region("eu")), authority: "\(cluster)/ca", into: expired, validity: 3_600,
            now: Date().addingTimeInterval(-86_400))
        XCTAssertEqual(try hello(target, tls: expired, partition: "users"), "connection")
        let status = try remote("replication status", "eu-1", "--json")
        XCTAssertGreaterThanOrEqual(try status.object()["refusals"] as? Int ?? 0, 2)
    }

    func testAReplicaBehindTheRetainedLogOrNewCatchesUpBySnapshotWhileWritesGoOn() throws {
        try layOut()
        // A small retention bound on the primary: a few compressed commits.
        try editConfig("eu-1") { $0["retention"] = ["max_bytes": 8_000, "max_age_seconds": 3_600] }
        try start("eu-1")
        // us-1 acknowledges the directory's commits (quorum:1 by default).
        try start("us-1")
        assertExit(try remote("home set", "eu-1", "alice", "eu"), 0)
        // eu-2 has no copy of users yet (only a primary creates a partition): it joins by
        // snapshot while a writer goes on.
        // The writer only runs child processes; the test waits for it before touching anything.
        nonisolated(unsafe) let test = self
        let writer = Thread {
            for i in 0..<40 { _ = try? test.remote("put", "eu-1", "users", "t", "w\(i)", "v\(i)", "--owner", "alice") }
        }
        writer.start()
        try start("eu-2")
        while writer.isExecuting || !writer.isFinished { usleep(50_000) }
        try assertConverges("users", primary: "eu-1", replicas: ["eu-2"])
        // Behind the bound: killed, then more commits than the primary keeps.
        stop("eu-2", signal: SIGKILL)
        for i in 0..<30 { assertExit(try remote("put", "eu-1", "users", "t", "x\(i)", "v\(i)", "--owner", "alice"), 0) }
        try start("eu-2")
        try assertConverges("users", primary: "eu-1", replicas: ["eu-2"])
        let (users, replica) = try usersStatus(on: "eu-1")
        XCTAssertGreaterThanOrEqual(replica["snapshots_sent"] as? Int ?? 0, 2, "\(replica)")
        XCTAssertLessThanOrEqual(users["retained_bytes"] as? Int ?? .max, 8_000)
    }

    func testServeRefusesBadConfigurationsAndStopsCleanlyOnSIGTERM() throws {
        try layOut()
        let file = "\(cluster)/hosts/eu-1/config.json"
        try editConfig("eu-1") { $0["colour"] = "blue" }
        var refused = try run(["serve", "--config", file], timeout: 30)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("config.json: colour is not a known key"), refused.stderr)
        try editConfig("eu-1") {
            $0.removeValue(forKey: "colour")
            var partitions = $0["partitions"] as! [String: Any]
            partitions["users"] = ["primary": "eu-1", "replicas": ["eu-2", "us-1"]]
            $0["partitions"] = partitions
        }
        refused = try run(["serve", "--config", file], timeout: 30)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("places the partition on us-1 of region us"), refused.stderr)
        try editConfig("eu-1") {
            var partitions = $0["partitions"] as! [String: Any]
            partitions["users"] = ["primary": "eu-1", "replicas": ["eu-2"]]
            $0["partitions"] = partitions
            $0["listen"] = "127.0.0.1:http"
        }
        refused = try run(["serve", "--config", file], timeout: 30)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("listen must be HOST:PORT"), refused.stderr)
        try editConfig("eu-1") {
            $0["listen"] = "127.0.0.1:\(self.basePort)"
            // Alone, eu-1 would wait for a replica of the directory (quorum:1 by default).
            var partitions = $0["partitions"] as! [String: Any]
            partitions["global"] = ["primary": "eu-1", "replicas": ["eu-2", "us-1"], "commit_mode": "async"]
            $0["partitions"] = partitions
        }

        try start("eu-1")
        assertExit(try remote("home set", "eu-1", "alice", "eu"), 0)
        assertExit(try remote("put", "eu-1", "users", "t", "k", "v", "--owner", "alice"), 0)
        let process = try XCTUnwrap(servers["eu-1"])
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .exit)
        XCTAssertEqual(process.terminationStatus, 0)
        // The database was closed: the directory opens (no lock held) and holds the commit.
        let data = "\(cluster)/hosts/eu-1/data"
        let read = try pdb("get", data, "users", "t", "k")
        assertExit(read, 0)
        XCTAssertEqual(read.stdout, "v\n")
        assertExit(try pdb("check", data), 0)
    }

    /// `quorum:1` (spec/replication.md#commit-modes): a write through the primary returns once
    /// the replica has it durable, so it reads there at once; without the replica it fails
    /// after the quorum timeout with its outcome unknown, durable on the primary all the same;
    /// the replica back, writes succeed again. `cluster init` refuses a quorum a region cannot
    /// give.
    func testQuorumCommitsWaitForTheirReplicaAndWithoutItEndWithTheirOutcomeUnknown() throws {
        let tooFew = try run(
            ["cluster", "init", cluster, "--regions", "eu:2,us:1", "--commit-mode", "quorum:1"])
        XCTAssertNotEqual(tooFew.status, 0)
        XCTAssertTrue(tooFew.stderr.contains("region us has 1 host(s), so 0 replica(s)"), tooFew.stderr)
        try? FileManager.default.removeItem(atPath: cluster)
        try layOut(regions: "eu:2", "--commit-mode", "quorum:1")
        try editConfig("eu-1") { $0["quorum_timeout_ms"] = 1_500 }
        let config = try HostConfiguration.load("\(cluster)/hosts/eu-1/config.json")
        XCTAssertEqual(config.placement(of: "users")?.commitMode, .quorum(1))
        XCTAssertEqual(config.placement(of: "global")?.commitMode, .quorum(1))
        for host in ["eu-1", "eu-2"] { try start(host) }
        assertExit(try remote("home set", "eu-1", "alice", "eu"), 0)
        for i in 0..<5 {
            assertExit(try remote("put", "eu-1", "users", "t", "k\(i)", "v\(i)", "--owner", "alice"), 0)
            let read = try remote("get", "eu-2", "users", "t", "k\(i)")
            assertExit(read, 0)
            XCTAssertEqual(read.stdout, "v\(i)\n", "an acknowledged write is on the replica when the call returns")
        }
        let applied = try remote(
            "apply", "eu-1", "users",
            stdin: #"{"op":"put","table":"t","key":"a","value":"1","owner":"alice"}"# + "\n" + #"{"op":"commit"}"#)
        assertExit(applied, 0)
        XCTAssertNotNil(try applied.object()["committed"] as? Int)

        stop("eu-2", signal: SIGKILL)
        let started = Date()
        let unknown = try remote("put", "eu-1", "users", "t", "lonely", "v", "--owner", "alice", "--json")
        XCTAssertEqual(unknown.status, 1)
        XCTAssertEqual(try unknown.errorCode(), "commit_outcome_unknown")
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 1.4)
        XCTAssertTrue(unknown.stdout.contains("0 of the 1 replica acknowledgements"), unknown.stdout)
        let kept = try remote("get", "eu-1", "users", "t", "lonely")
        assertExit(kept, 0)
        XCTAssertEqual(kept.stdout, "v\n", "an unknown outcome is not a rollback: the primary has it")

        try start("eu-2")
        assertExit(try remote("put", "eu-1", "users", "t", "back", "v", "--owner", "alice"), 0)
        for key in ["lonely", "back"] {
            let read = try remote("get", "eu-2", "users", "t", key)
            assertExit(read, 0)
            XCTAssertEqual(read.stdout, "v\n")
        }
    }

    /// `quorum:1` through the fault proxy: a delayed network slows quorum writes but they
    /// succeed and read on the replica at once; a dropping or black-holed one lets no
    /// acknowledgement through, so writes end with `commit_outcome_unknown` after the timeout,
    /// kept on the primary; healed, writes succeed again and the replica ends with every write.
    func testQuorumWritesThroughAFaultyNetworkAreAcknowledgedOnlyWhenTheReplicaHasThem() throws {
        try layOut(regions: "eu:2", "--commit-mode", "quorum:1")
        let proxy = try FaultProxy(upstreamPort: basePort)
        defer { proxy.stop() }
        try routeToEU1(through: proxy)
        try editConfig("eu-1") {
            $0["peer_timeout_seconds"] = 2
            $0["quorum_timeout_ms"] = 1_500
        }
        try start("eu-1")
        try start("eu-2")
        assertExit(try remote("home set", "eu-1", "alice", "eu"), 0)
        var written: [String] = []
        for (round, mode) in [FaultProxy.Mode.delay(milliseconds: 30), .drop, .blackHole].enumerated() {
            proxy.set(mode)
            let key = "q\(round)"
            let result = try remote("put", "eu-1", "users", "t", key, "v\(round)", "--owner", "alice", "--json")
            written.append(key)
            if case .delay = mode {
                assertExit(result, 0)
                let read = try remote("get", "eu-2", "users", "t", key)
                XCTAssertEqual(read.stdout, "v\(round)\n", "acknowledged, so on the replica")
            } else {
                XCTAssertEqual(result.status, 1, "\(mode): \(result.stdout)")
                XCTAssertEqual(try result.errorCode(), "commit_outcome_unknown", "\(mode)")
                XCTAssertEqual(try remote("get", "eu-1", "users", "t", key).stdout, "v\(round)\n")
            }
            proxy.set(.pass)
            try assertConverges("users", primary: "eu-1", replicas: ["eu-2"])
            let healed = "healed\(round)"
            assertExit(try remote("put", "eu-1", "users", "t", healed, "h", "--owner", "alice"), 0)
            written.append(healed)
        }
        for key in written { assertExit(try remote("get", "eu-2", "users", "t", key), 0) }
    }

    /// Write forwarding of the directory (spec/replication.md#write-forwarding): the same 200
    /// subjects assigned at once through three hosts of three regions, each host asking a
    /// different region for each subject. The directory's primary decides: exactly one
    /// assignment per subject succeeds, the others get `already_registered`, and every host
    /// ends with the winners' homes.
    func testConcurrentHomeAssignmentsThroughThreeRegionsHaveOneWinnerEach() throws {
        try layOut(regions: "eu:1,us:1,ap:1")
        let hosts = ["eu-1", "us-1", "ap-1"]
        let regions = ["eu", "us", "ap"]
        for host in hosts { try start(host) }
        let subjects = (0..<200).map { "subject-\($0)" }
        let outcomes = Outcomes(hosts: hosts.count, subjects: subjects.count)
        nonisolated(unsafe) let test = self
        let threads = hosts.enumerated().map { h, host in
            Thread {
                for (i, subject) in subjects.enumerated() {
                    let region = regions[(i + h) % regions.count]
                    guard let result = try? test.remote("home set", host, subject, region, "--json") else { continue }
                    let code =
                        result.status == 0 ? "ok" : ((try? result.errorCode()) ?? nil) ?? "status \(result.status)"
                    outcomes.set(host: h, subject: i, code == "ok" ? region : code)
                }
            }
        }
        for thread in threads { thread.start() }
        for thread in threads { while thread.isExecuting || !thread.isFinished { usleep(50_000) } }
        var winners: [String: String] = [:]
        for (i, subject) in subjects.enumerated() {
            let answers = (0..<hosts.count).map { outcomes.get(host: $0, subject: i) }
            let won = answers.filter { regions.contains($0 ?? "") }
            XCTAssertEqual(won.count, 1, "\(subject): \(answers)")
            XCTAssertEqual(
                answers.filter { $0 == "already_registered" }.count, hosts.count - 1, "\(subject): \(answers)")
            winners[subject] = won.first ?? nil
        }
        try assertConverges("global", primary: "eu-1", replicas: ["us-1", "ap-1"])
        for host in hosts {
            let list = try remote("home list", host, "--json")
            assertExit(list, 0)
            let homes = try XCTUnwrap(try list.object()["homes"] as? [[String: Any]])
            // Besides the test's subjects: each region's signing-key owner, which its primary's
            // auth layer registered at start (spec/auth.md#signing-keys).
            let found = Dictionary(
                uniqueKeysWithValues: homes.compactMap { entry in
                    (entry["subject"] as? String).map { ($0, entry["home"] as? String ?? "") }
                }
                .filter { !$0.0.hasPrefix("pdb.signing-keys.") })
            XCTAssertEqual(found.count, subjects.count, host)
            for (subject, home) in winners { XCTAssertEqual(found[subject], home, "\(subject) on \(host)") }
        }
    }

    func testThroughAFaultyNetworkTheReplicaAlwaysEndsIdentical() throws {
        try layOut()
        let primaryPort = basePort
        let proxy = try FaultProxy(upstreamPort: primaryPort)
        defer { proxy.stop() }
        // eu-2 reaches eu-1 only through the proxy; the identity check is on the certificate.
        try routeToEU1(through: proxy)
        try editConfig("eu-1") { $0["peer_timeout_seconds"] = 2 }
        try start("eu-1")
        try start("eu-2")
        assertExit(try remote("home set", "eu-1", "alice", "eu"), 0)
        let modes: [FaultProxy.Mode] = [
            .delay(milliseconds: 30), .cutAfter(bytes: 700), .drop, .blackHole, .cutAfter(bytes: 5_000), .pass,
        ]
        for (round, mode) in modes.enumerated() {
            proxy.set(mode)
            let lines = (0..<50).map {
                #"{"op":"put","table":"t","key":"r\#(round)-\#($0)","value":"\#(String(repeating: "v", count: 300))","owner":"alice"}"#
            }
            assertExit(
                try remote("apply", "eu-1", "users", stdin: (lines + [#"{"op":"commit"}"#]).joined(separator: "\n")), 0)
            for i in 0..<5 {
                assertExit(try remote("put", "eu-1", "users", "t", "s\(round)-\(i)", "x", "--owner", "alice"), 0)
            }
            // Whatever the network did, the copy is a committed state: it opens and reads.
            assertExit(try remote("info", "eu-2", "users"), 0)
            proxy.set(.pass)
            try assertConverges("users", primary: "eu-1", replicas: ["eu-2"])
        }
        XCTAssertGreaterThan(proxy.connections, 3, "the faults never made the replica reconnect")
        stop("eu-2")
        assertExit(try pdb("check", "\(cluster)/hosts/eu-2/data"), 0)
    }

    /// Sends a replication hello with the certificate in `tls`; returns the refusal's code, or
    /// `connection` when no TLS session came about, or `accepted`.
    private func hello(_ address: HostAddress, tls: String, partition: String) throws -> String {
        let files = try TLSFiles(directory: tls)
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            let group = MultiThreadedEventLoopGroup.singleton
            do {
                let connection = try await FrameTransport.connect(to: address, tls: files, group: group)
                outcome.value = try await connection.run { inbound, outbound in
                    try await outbound.write(
                        Frame(
                            epoch: 1,
                            .hello(
                                protocolVersion: Message.protocolVersion, partition: partition, fileID: [],
                                durableLSN: 0)))
                    for try await frame in inbound {
                        if case .refusal(let code, _) = frame.message { return code }
                        return "accepted"
                    }
                    return "connection"
                }
            } catch {
                outcome.value = "connection"
            }
            done.signal()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        return outcome.value ?? "timeout"
    }
}

/// What each host answered for each subject, filled by one thread per host.
private final class Outcomes: @unchecked Sendable {
    private let lock = NSLock()
    private var answers: [[String?]]

    init(hosts: Int, subjects: Int) {
        answers = Array(repeating: Array(repeating: nil, count: subjects), count: hosts)
    }

    func set(host: Int, subject: Int, _ answer: String) { lock.withLock { answers[host][subject] = answer } }
    func get(host: Int, subject: Int) -> String? { lock.withLock { answers[host][subject] } }
}

private final class Outcome: @unchecked Sendable {
    var value: String?
}
