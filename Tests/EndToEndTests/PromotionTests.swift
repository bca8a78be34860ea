import Foundation
import PartitionDB
import Residency
import XCTest

/// Promotion with epoch fencing, with real `pdb serve` processes (spec/replication.md#promotion,
/// #rejoin): no write acknowledged in quorum mode is lost, a deposed primary never gets a write
/// acknowledged, and what it had alone is cut, counted and kept.
final class PromotionTests: ClusterTestCase {
    /// The `users` entry of `pdb replication status --json` on `host`.
    private func users(on host: String) throws -> [String: Any] {
        let status = try remote("replication status", host, "--json")
        assertExit(status, 0)
        let partitions = try XCTUnwrap(try status.object()["partitions"] as? [[String: Any]])
        return try XCTUnwrap(partitions.first { $0["name"] as? String == "users" })
    }

    /// Waits until `host` reports `users` with `role` at `epoch`.
    private func waitForRole(_ host: String, _ role: String, epoch: Int, timeout: TimeInterval = 30) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var last: [String: Any] = [:]
        while Date() < deadline {
            last = try users(on: host)
            if last["role"] as? String == role, last["epoch"] as? Int == epoch { return }
            usleep(100_000)
        }
        XCTFail("\(host) never became \(role) at epoch \(epoch): \(last)")
    }

    private func promote(_ host: String, _ rest: String...) throws -> RunResult {
        try run(["promote", try address(host)] + rest + ["--tls", operatorTLS, "--json"], timeout: 60)
    }

    /// The keys of table `t` of `users` on `host`.
    private func keys(on host: String) throws -> Set<String> {
        let scan = try remote("scan", host, "users", "t", "--json")
        assertExit(scan, 0)
        return Set(try scan.objects().compactMap { $0["key"] as? String })
    }

    private func put(_ host: String, _ key: String) throws -> RunResult {
        try remote("put", host, "users", "t", key, "v-\(key)", "--owner", "alice", "--json")
    }

    /// SIGKILL the primary right after quorum commits returned; promote a replica: every commit
    /// is there, the other replica follows it, writes are accepted through either; the old
    /// primary restarted with its old configuration learns it is deposed and follows; a full
    /// restart keeps the new primary.
    func testAPromotedReplicaHasEveryAcknowledgedCommitAndEveryHostFollowsIt() throws {
        try layOut(regions: "eu:3", "--commit-mode", "quorum:1")
        for host in ["eu-1", "eu-2", "eu-3"] { try start(host) }
        assertExit(try remote("home set", "eu-1", "alice", "eu"), 0)
        var acknowledged: [String] = []
        for i in 0..<20 {
            let key = "before-\(i)"
            assertExit(try put("eu-1", key), 0)
            acknowledged.append(key)
        }
        stop("eu-1", signal: SIGKILL)

        let refused = try promote("eu-2", "users", "--epoch", "1")
        XCTAssertNotEqual(refused.status, 0, "epoch 1 is the first primary's")
        let promoted = try promote("eu-2", "users")
        assertExit(promoted, 0)
        let report = try XCTUnwrap((try promoted.object()["promotions"] as? [[String: Any]])?.first)
        XCTAssertEqual(report["epoch"] as? Int, 2)
        XCTAssertEqual(report["previous_primary"] as? String, "eu-1")
        XCTAssertEqual(report["unreached"] as? [String], ["eu-1"])
        XCTAssertNotNil((report["fenced"] as? [String: Any])?["eu-3"])
        let again = try promote("eu-2", "users")
        XCTAssertEqual(try again.errorCode(), "already_primary")

        for key in acknowledged {
            XCTAssertEqual(try remote("get", "eu-2", "users", "t", key).stdout, "v-\(key)\n", key)
        }
        try waitForRole("eu-3", "replica", epoch: 2)
        XCTAssertEqual(try users(on: "eu-3")["primary"] as? String, "eu-2")
        for i in 0..<5 {
            let key = "after-\(i)"
            assertExit(try put("eu-2", key), 0)
            acknowledged.append(key)
            // Forwarded by eu-3 to the new primary, and read there at once.
            let forwarded = "forwarded-\(i)"
            assertExit(try put("eu-3", forwarded), 0)
            XCTAssertEqual(try remote("get", "eu-3", "users", "t", forwarded).stdout, "v-\(forwarded)\n")
            acknowledged.append(forwarded)
        }

        // The old primary, with its old configuration: fenced at its first contact, it follows.
        try start("eu-1")
        try waitForRole("eu-1", "replica", epoch: 2)
        try assertConverges("users", primary: "eu-2", replicas: ["eu-1", "eu-3"])
        XCTAssertEqual(try users(on: "eu-1")["primary"] as? String, "eu-2")
        let write = try put("eu-1", "through-old-primary")
        assertExit(write, 0)
        acknowledged.append("through-old-primary")

        // A full restart keeps the new primary (the term files).
        for host in ["eu-1", "eu-2", "eu-3"] { stop(host) }
        for host in ["eu-1", "eu-2", "eu-3"] { try start(host) }
        XCTAssertEqual(try users(on: "eu-2")["role"] as? String, "primary")
        try waitForRole("eu-1", "replica", epoch: 2)
        assertExit(try put("eu-1", "after-restart"), 0)
        acknowledged.append("after-restart")
        try assertConverges("users", primary: "eu-2", replicas: ["eu-1", "eu-3"])
        for host in ["eu-1", "eu-3"] {
            for key in acknowledged {
                XCTAssertEqual(try remote("get", host, "users", "t", key).stdout, "v-\(key)\n", "\(key) on \(host)")
            }
        }
    }

    /// Two of three hosts down: promoting the third is refused (`promotion_unsafe`: a quorum:1
    /// commit may be only on the other replica) and leaves it fenced, taking no write. With
    /// that replica back, promoting it again succeeds with every acknowledged commit, although
    /// the refused epoch is the newest every host knows: its would-be primary never began it.
    func testPromotionWithTooFewReplicasReachedIsRefusedThenSucceedsOnceOneIsBack() throws {
        try layOut(regions: "eu:3", "--commit-mode", "quorum:1")
        for host in ["eu-1", "eu-2", "eu-3"] { try start(host) }
        assertExit(try remote("home set", "eu-1", "alice", "eu"), 0)
        let acknowledged = (0..<5).map { "before-\($0)" }
        for key in acknowledged { assertExit(try put("eu-1", key), 0) }
        stop("eu-1", signal: SIGKILL)
        stop("eu-3", signal: SIGKILL)

        let refused = try promote("eu-2", "users")
        XCTAssertEqual(try refused.errorCode(), "promotion_unsafe", refused.stdout)
        XCTAssertEqual(try users(on: "eu-2")["role"] as? String, "fenced")
        XCTAssertNotEqual(try put("eu-2", "while-fenced").status, 0, "a fenced host takes no write")

        try start("eu-3")
        let promoted = try promote("eu-2", "users")
        assertExit(promoted, 0)
        let report = try XCTUnwrap((try promoted.object()["promotions"] as? [[String: Any]])?.first)
        XCTAssertEqual(report["epoch"] as? Int, 3)
        for key in acknowledged {
            XCTAssertEqual(try remote("get", "eu-2", "users", "t", key).stdout, "v-\(key)\n", key)
        }
        assertExit(try put("eu-2", "after"), 0)
        try waitForRole("eu-3", "replica", epoch: 3)
        try assertConverges("users", primary: "eu-2", replicas: ["eu-3"])
        XCTAssertEqual(try keys(on: "eu-3"), Set(acknowledged + ["after"]))
    }

    /// A replica held back by the fault proxy while the other acknowledges the primary's
    /// quorum:1 commits, then the primary SIGKILLed: promoting the one held back is refused
    /// (`promotion_behind`, naming the other), promoting the other succeeds although the refused
    /// promotion left an epoch every host knows, and the one held back follows it and catches up.
    func testPromotingAReplicaBehindIsRefusedNamingTheOneAhead() throws {
        try layOut(regions: "eu:3", "--commit-mode", "quorum:1")
        let proxy = try FaultProxy(upstreamPort: basePort)
        defer { proxy.stop() }
        try routeToEU1(through: proxy)
        for host in ["eu-1", "eu-2", "eu-3"] { try start(host) }
        assertExit(try remote("home set", "eu-1", "alice", "eu"), 0)
        var acknowledged = (0..<3).map { "before-\($0)" }
        for key in acknowledged { assertExit(try put("eu-1", key), 0) }
        try assertConverges("users", primary: "eu-1", replicas: ["eu-2", "eu-3"])

        proxy.set(.blackHole)
        for i in 0..<5 {
            let key = "held-back-\(i)"
            assertExit(try put("eu-1", key), 0)
            acknowledged.append(key)
        }
        stop("eu-1", signal: SIGKILL)

        let refused = try promote("eu-2", "users")
        XCTAssertEqual(try refused.errorCode(), "promotion_behind", refused.stdout)
        XCTAssertTrue(refused.stdout.contains("eu-3"), "names the host to promote: \(refused.stdout)")
        let promoted = try promote("eu-3", "users")
        assertExit(promoted, 0)
        for key in acknowledged {
            XCTAssertEqual(try remote("get", "eu-3", "users", "t", key).stdout, "v-\(key)\n", key)
        }
        assertExit(try put("eu-3", "after"), 0)
        acknowledged.append("after")
        try waitForRole("eu-2", "replica", epoch: 3)
        try assertConverges("users", primary: "eu-3", replicas: ["eu-2"])
        XCTAssertEqual(try keys(on: "eu-2"), Set(acknowledged))
    }

    /// The primary cut off by the fault proxy, a replica promoted: the old primary's writes
    /// after the cut are never acknowledged; healed, it learns it is deposed, cuts its copy back
    /// to the new primary's history, keeps what it cut in a backup file `pdb restore` reads,
    /// reports it in `pdb replication status`, and follows.
    func testACutOffPrimaryIsNeverAcknowledgedAndRejoinsKeepingWhatItCut() throws {
        try layOut(regions: "eu:2", "--commit-mode", "quorum:1")
        let proxy = try FaultProxy(upstreamPort: basePort)
        defer { proxy.stop() }
        try routeToEU1(through: proxy)
        try editConfig("eu-1") {
            $0["peer_timeout_seconds"] = 2
            $0["quorum_timeout_ms"] = 1_000
        }
        try editConfig("eu-2") { $0["quorum_timeout_ms"] = 1_000 }
        try start("eu-1")
        try start("eu-2")
        assertExit(try remote("home set", "eu-1", "alice", "eu"), 0)
        for i in 0..<5 { assertExit(try put("eu-1", "before-\(i)"), 0) }
        try assertConverges("users", primary: "eu-1", replicas: ["eu-2"])

        proxy.set(.blackHole)
        let promoted = try promote("eu-2", "users")
        assertExit(promoted, 0)
        let report = try XCTUnwrap((try promoted.object()["promotions"] as? [[String: Any]])?.first)
        XCTAssertEqual(report["unreached"] as? [String], ["eu-1"])
        var lost: [String] = []
        for i in 0..<3 {
            let key = "cut-off-\(i)"
            let result = try put("eu-1", key)
            XCTAssertEqual(try result.errorCode(), "commit_outcome_unknown", "never acknowledged: \(result.stdout)")
            lost.append(key)
        }

        proxy.set(.pass)
        try waitForRole("eu-1", "replica", epoch: 2)
        assertExit(try put("eu-2", "after-heal"), 0)
        try assertConverges("users", primary: "eu-2", replicas: ["eu-1"])
        for key in lost {
            XCTAssertEqual(try remote("get", "eu-1", "users", "t", key).status, 1, "\(key) is cut from eu-1's copy")
        }
        let cut = try XCTUnwrap(try users(on: "eu-1")["cut"] as? [[String: Any]])
        XCTAssertEqual(cut.count, 1, "\(cut)")
        XCTAssertEqual(cut.first?["commits"] as? Int, lost.count)
        XCTAssertEqual(cut.first?["epoch"] as? Int, 1)
        let file = try XCTUnwrap(cut.first?["file"] as? String)

        // The cut commits, read with pdb from the kept copy.
        let inspect = root.appendingPathComponent("inspect").path
        assertExit(try run(["init", inspect, "--region", "eu"]), 0)
        assertExit(try run(["restore", inspect, file, "--as", "users-cut"]), 0)
        for key in lost + ["before-0"] {
            XCTAssertEqual(try run(["get", inspect, "users-cut", "t", key]).stdout, "v-\(key)\n", key)
        }
    }

    /// 50 SIGKILLs of the primary at random moments while a writer commits in quorum mode,
    /// each followed by promoting the other host and restarting the killed one: no acknowledged
    /// commit is ever lost, and what survives is a prefix of the writes: every acknowledged one,
    /// plus at most the one in flight.
    func testFiftyKillsOfThePrimaryLoseNoAcknowledgedCommit() throws {
        try layOut(regions: "eu:2", "--commit-mode", "quorum:1")
        for host in ["eu-1", "eu-2"] {
            try editConfig(host) {
                $0["quorum_timeout_ms"] = 1_000
                $0["peer_timeout_seconds"] = 2
            }
        }
        try start("eu-1")
        try start("eu-2")
        assertExit(try remote("home set", "eu-1", "alice", "eu"), 0)
        var generator = SplitMix64(state: UInt64(ProcessInfo.processInfo.environment["PDB_KILL_SEED"] ?? "") ?? 1313)
        var primary = "eu-1"
        var replica = "eu-2"
        var acknowledged: [String] = []
        let kills = Int(ProcessInfo.processInfo.environment["PDB_PROMOTION_KILLS"] ?? "") ?? 50
        for round in 0..<kills {
            // Writes until the kill, from a thread; the kill comes after a random number of them.
            let writes = 1 + Int(generator.next() % 6)
            var written: [(key: String, ok: Bool)] = []
            for n in 0..<writes {
                let key = "r\(round)-\(n)"
                written.append((key, try put(primary, key).status == 0))
            }
            let inFlight = "r\(round)-\(writes)"
            nonisolated(unsafe) let test = self
            let target = primary
            let writer = Thread { _ = try? test.put(target, inFlight) }
            writer.start()
            usleep(UInt32(generator.next() % 60_000))
            stop(primary, signal: SIGKILL)
            while writer.isExecuting { usleep(10_000) }

            assertExit(try promote(replica, "users"), 0)
            for (key, ok) in written where ok { acknowledged.append(key) }
            // Every key the new primary has, in one scan: every acknowledged one must be there.
            let keys = try self.keys(on: replica)
            for key in acknowledged {
                XCTAssertTrue(keys.contains(key), "round \(round): acknowledged \(key) lost")
            }
            // Survivors of this round: a prefix of its writes, at most one past the acknowledged.
            let present = (written.map(\.key) + [inFlight]).map { keys.contains($0) }
            let prefix = present.prefix { $0 }.count
            XCTAssertEqual(present.dropFirst(prefix).filter { $0 }.count, 0, "round \(round): not a prefix \(present)")
            XCTAssertLessThanOrEqual(
                prefix, written.filter(\.ok).count + 1, "round \(round): more than the in-flight write survived")
            try start(primary)
            try assertConverges("users", primary: replica, replicas: [primary])
            swap(&primary, &replica)
        }
        XCTAssertGreaterThanOrEqual(acknowledged.count, kills, "the writer got writes acknowledged")
    }
}
