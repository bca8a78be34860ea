import Foundation
import Logging
import PartitionDB
import Residency
import Synchronization

/// PartitionDB's side of a round. This process is the primary, as an application embedding
/// PartitionDB is: it opens eu-1's database of a cluster laid out by `pdb cluster init --regions
/// eu:2`, commits one durable write transaction per insert into the `global` partition (records
/// without an owner, as in the engine benchmark), and runs a `ClusterHost` that ships them. The
/// replica, eu-2, is a `pdb serve` process with its own data directory.
struct PartitionDBSide {
    static let replica = "eu-2"
    static let partition = Database.globalPartitionName

    let settings: Settings
    let pdb: String
    /// This round's folder for PartitionDB (must not exist).
    let directory: String

    var logs: String { directory + "/logs" }

    /// The throughput, steady-rate and shipping rows (phase A).
    func runStreaming(into results: inout RoundResults) throws {
        let cluster = try layOut("streaming")
        let configuration = try HostConfiguration.load(cluster + "/hosts/eu-1/config.json")
        let database = try Database.openAsCreated(at: configuration.dataDirectory)
        var primary: PrimaryHost? = nil
        var replica: Child? = nil
        defer {
            replica?.stop()
            primary?.stop()
            try? database.close()
        }
        let partition = try database.globalPartition()
        _ = try partition.write(durability: .durable) { tx in try tx.createTable(Records.table) }
        let writer = PrimaryWriter(partition: partition)

        // 1. The writer alone: no host, so no commit observer and nothing shipped.
        writer.next = Records.phaseBase(1)
        let alone = try writer.flat(seconds: settings.seconds)
        results.set(.commitsAlone, .partitiondb, alone)
        progress("alone (no host): \(format(alone, .commitsPerSecond))")

        // 2. The host running, the replica not connected: every commit's change set is kept for it.
        primary = try PrimaryHost(configuration: configuration, database: database, verbose: settings.verbose)
        writer.next = Records.phaseBase(2)
        let hostOnly = try writer.flat(seconds: settings.seconds)
        results.set(.commitsHostOnly, .partitiondb, hostOnly)
        progress("host running, no replica: \(format(hostOnly, .commitsPerSecond))")

        // 3. The replica connected (it joins by snapshot, then streams).
        replica = try startReplica(cluster, label: "streaming")
        try primary!.wait(forLSN: partition.lastLSN.rawValue, replica: replica!, timeout: 120)
        let before = try primary!.figures()
        let firstLSN = partition.lastLSN.rawValue
        writer.next = Records.phaseBase(3)
        let withReplica = try writer.flat(seconds: settings.seconds)
        results.set(.commitsWithReplica, .partitiondb, withReplica)
        results.set(.withReplicaOverAlone, .partitiondb, withReplica / alone)
        progress("one async replica connected: \(format(withReplica, .commitsPerSecond))")

        // 4. Steady rates, each after the replica has caught up.
        for (offset, rate) in settings.rates.enumerated() {
            try primary!.wait(forLSN: partition.lastLSN.rawValue, replica: replica!, timeout: 120)
            let recorder = primary!.recorder
            recorder.start(
                acknowledged: primary!.progress.durableLSN,
                expectedCommits: Int(Double(rate) * settings.steadySeconds * 1.2))
            let sampler = NewestLagSampler(recorder: recorder, seconds: settings.steadySeconds)
            writer.next = Records.phaseBase(10 + offset)
            let achieved = try writer.paced(rate: Double(rate), seconds: settings.steadySeconds, recorder: recorder)
            try primary!.wait(forLSN: partition.lastLSN.rawValue, replica: replica!, timeout: 60)
            let samples = sampler.finish()
            let (lags, unacknowledged, early) = recorder.finish()
            guard unacknowledged == 0 else {
                throw ReplicationBenchError.verification(
                    "\(unacknowledged) commits at \(rate)/s were never acknowledged")
            }
            let milliseconds = lags.map { Double($0) / 1e6 }
            let sampled = samples.map { Double($0) / 1e6 }
            results.set(.achievedRate(rate), .partitiondb, achieved)
            results.set(.lagCommitP50(rate), .partitiondb, percentile(milliseconds, 50))
            results.set(.lagCommitP99(rate), .partitiondb, percentile(milliseconds, 99))
            results.set(.lagSampledP50(rate), .partitiondb, percentile(sampled, 50))
            results.set(.lagSampledP99(rate), .partitiondb, percentile(sampled, 99))
            progress(
                "steady \(rate)/s: achieved \(format(achieved, .commitsPerSecond)); lag of each of \(lags.count) "
                    + "commits p50 \(format(percentile(milliseconds, 50), .milliseconds)), p99 "
                    + "\(format(percentile(milliseconds, 99), .milliseconds)), max "
                    + "\(format(milliseconds.max(), .milliseconds)) (\(early) acknowledged before the commit returned); "
                    + "sampled every 10 ms (\(sampled.count)): p50 \(format(percentile(sampled, 50), .milliseconds)), "
                    + "p99 \(format(percentile(sampled, 99), .milliseconds))")
        }

        // 5. What the stream carried for the commits of 3 and 4.
        try primary!.wait(forLSN: partition.lastLSN.rawValue, replica: replica!, timeout: 60)
        let after = try primary!.figures()
        guard after.snapshotsSent == before.snapshotsSent else {
            throw ReplicationBenchError.verification(
                "the replica needed a snapshot while streaming; bytes per commit would count it")
        }
        let commits = partition.lastLSN.rawValue - firstLSN
        let perCommit = Double(after.bytesShipped - before.bytesShipped) / Double(commits)
        results.set(.bytesPerCommit, .partitiondb, perCommit)
        results.set(.compressionRatio, .partitiondb, Double(after.compressionRatioPercent) / 100)
        progress(
            "shipped \(format(perCommit, .bytes)) per commit over \(commits) commits; compression "
                + "\(Double(after.compressionRatioPercent) / 100) : 1 (uncompressed change-set bytes per batch byte)")

        // 6. Quorum 1 (the directory's default with a replica): each commit waits for the
        // replica's acknowledgement, with 1 and with 8 writers.
        for writers in Row.quorumWriters {
            try primary!.wait(forLSN: partition.lastLSN.rawValue, replica: replica!, timeout: 60)
            let rate = try quorumCommits(
                partition, host: primary!.host, writers: writers, seconds: settings.seconds,
                base: Records.phaseBase(30 + writers))
            results.set(.quorumCommits(writers: writers), .partitiondb, rate)
            progress("quorum:1, \(writers) writers: \(format(rate, .commitsPerSecond))")
        }

        replica!.stop()
        try verifyCopy(cluster, partition)
        progress("the replica's copy matches the primary's (pdb checksum)")
        // A host and a database per phase: nothing of this one is kept.
        replica = nil
        primary!.stop()
        primary = nil
        try database.close()
        try FileManager.default.removeItem(atPath: cluster)
    }

    /// The catch-up row (phase B): a fresh primary loaded with `records` records (nil: as many
    /// as make the partition file `settings.catchUpBytes`), then a new empty replica started.
    /// Returns the number of records loaded.
    func runCatchUp(records fixed: Int?, into results: inout RoundResults) throws -> Int {
        let cluster = try layOut("catch-up")
        let configuration = try HostConfiguration.load(cluster + "/hosts/eu-1/config.json")
        let database = try Database.openAsCreated(at: configuration.dataDirectory)
        var primary: PrimaryHost? = nil
        var replica: Child? = nil
        defer {
            replica?.stop()
            primary?.stop()
            try? database.close()
        }
        let partition = try database.globalPartition()
        let file = configuration.dataDirectory + "/" + Self.partition + ".pdb"
        /// The partition's live pages in bytes.
        func partitionBytes() throws -> Int {
            let info = try partition.info()
            return (info.pageCount - info.freePages) * info.pageSize
        }
        // Loaded before the host starts (nothing to ship yet), in transactions of up to 100,000
        // records, each chunk sized from the bytes per record so far so that the partition ends
        // just past the target. The chunks commit without fsync (one checkpoint at the end
        // writes and syncs everything): a durable commit that changes 2,048 pages or more is
        // relocated to new pages and frees the old, which left a bulk-loaded file 40% free
        // pages; this way the file is the data, at the fill random inserts leave, as a freshly
        // loaded PostgreSQL table has no dead tuples.
        let loadStart = monotonicNanoseconds()
        var loaded = 0
        while true {
            let size = try partitionBytes()
            let count: Int
            if let fixed {
                count = min(100_000, fixed - loaded)
            } else {
                guard size < settings.catchUpBytes else { break }
                let perRecord = loaded == 0 ? 400 : max(1, size / loaded)
                count = min(100_000, max(2_000, (settings.catchUpBytes - size) / perRecord + 1))
            }
            guard count > 0 else { break }
            try load(partition, Int64(loaded + 1)..<Int64(loaded + count + 1))
            loaded += count
        }
        // Both sides start from written data files (PostgreSQL: a CHECKPOINT before the backup).
        try partition.checkpoint()
        let size = try fileSize(file)
        progress(
            "loaded \(loaded) records: a partition file of \(format(Double(size), .bytes)), in "
                + "\(format(Double(monotonicNanoseconds() - loadStart) / 1e9, .seconds))")
        primary = try PrimaryHost(configuration: configuration, database: database, verbose: settings.verbose)
        let target = partition.lastLSN.rawValue
        let before = try primary!.figures()

        let start = monotonicNanoseconds()
        replica = try startReplica(cluster, label: "catch-up")
        let reached = try primary!.wait(forLSN: target, replica: replica!, timeout: settings.catchUpTimeout)
        let seconds = Double(reached - start) / 1e9
        let shipped = try primary!.figures().bytesShipped - before.bytesShipped
        results.set(.catchUpSeconds, .partitiondb, seconds)
        results.set(.catchUpDataBytes, .partitiondb, Double(size))
        results.set(.catchUpBytesShipped, .partitiondb, Double(shipped))
        progress(
            "a new replica caught up \(format(Double(size), .bytes)) in \(format(seconds, .seconds)) (from its "
                + "process start to its acknowledgement of LSN \(target); \(format(Double(shipped), .bytes)) shipped)")
        replica!.stop()
        try verifyCopy(cluster, partition)
        progress("the new replica's copy matches the primary's (pdb checksum)")
        replica = nil
        primary!.stop()
        primary = nil
        try database.close()
        try FileManager.default.removeItem(atPath: cluster)
        return loaded
    }

    // MARK: Pieces

    /// `writers` threads, each committing one record at a time and waiting for the commit's
    /// quorum (`ClusterHost.waitForCommitMode`) before the next, for `seconds`; returns the
    /// commits a second of all of them.
    private func quorumCommits(_ partition: Partition, host: ClusterHost, writers: Int, seconds: Double, base: Int64)
        throws -> Double
    {
        let end = monotonicNanoseconds() + Int64(seconds * 1e9)
        let counts = (0..<writers).map { _ in Shared(0) }
        let failure = Shared<(any Error)?>(nil)
        let start = monotonicNanoseconds()
        let threads = (0..<writers).map { index in
            Thread {
                let writer = PrimaryWriter(partition: partition)
                writer.next = base + Int64(index) * 1_000_000_000
                var commits = 0
                do {
                    while monotonicNanoseconds() < end {
                        // The partition's newest LSN right after the commit: this one's or a
                        // later one's, whose acknowledgement covers it.
                        let lsn = try writer.commit()
                        try Self.waitForQuorum(host, LSN(lsn))
                        commits += 1
                    }
                } catch {
                    failure.value = error
                }
                counts[index].value = commits
            }
        }
        for thread in threads { thread.start() }
        for thread in threads { while !thread.isFinished { usleep(1_000) } }
        if let error = failure.value { throw error }
        return Double(counts.reduce(0) { $0 + $1.value }) / (Double(monotonicNanoseconds() - start) / 1e9)
    }

    /// `waitForCommitMode` of the global partition, from a thread that is not the cooperative pool's.
    private static func waitForQuorum(_ host: ClusterHost, _ lsn: LSN) throws {
        let done = DispatchSemaphore(value: 0)
        let failure = Shared<(any Error)?>(nil)
        Task {
            do {
                try await host.waitForCommitMode(of: Self.partition, lsn: lsn)
            } catch {
                failure.value = error
            }
            done.signal()
        }
        done.wait()
        if let error = failure.value { throw error }
    }

    private func progress(_ message: String) { printError("[partitiondb] \(message)\n") }

    /// `pdb cluster init DIR --regions eu:2` on free loopback ports.
    private func layOut(_ name: String) throws -> String {
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let cluster = directory + "/" + name
        let port = try freeLoopbackPorts(2)
        try Processes.check(
            pdb, ["cluster", "init", cluster, "--regions", "eu:2", "--base-port", "\(port)"], timeout: 60, logs: logs,
            label: "cluster-init-\(name)")
        return cluster
    }

    private func startReplica(_ cluster: String, label: String) throws -> Child {
        try Processes.start(
            pdb, ["serve", "--config", cluster + "/hosts/\(Self.replica)/config.json"],
            name: "pdb serve \(Self.replica)",
            log: logs + "/\(Self.replica)-\(label).log", stopSignal: SIGTERM)
    }

    /// One transaction of records `indexes`, committed without fsync (see `runCatchUp`).
    private func load(_ partition: Partition, _ indexes: Range<Int64>) throws {
        let key = UnsafeMutableRawBufferPointer.allocate(byteCount: Records.keySize, alignment: 8)
        let value = UnsafeMutableRawBufferPointer.allocate(byteCount: Records.valueSize, alignment: 8)
        defer {
            key.deallocate()
            value.deallocate()
        }
        try partition.write(durability: .noSync) { tx in
            for index in indexes {
                Records.write(index, key: key, value: value)
                try tx.put(Records.table, UnsafeRawBufferPointer(key), UnsafeRawBufferPointer(value))
            }
        }
    }

    /// The stopped replica's copy sums as the primary's partition: `pdb checksum` on its directory.
    private func verifyCopy(_ cluster: String, _ partition: Partition) throws {
        let expected = try partition.contentChecksum()
        let output = try Processes.check(
            pdb, ["checksum", cluster + "/hosts/\(Self.replica)/data", Self.partition, "--json"], timeout: 300,
            logs: logs, label: "checksum")
        guard let object = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any],
            let sha256 = object["sha256"] as? String, let lsn = object["lsn"] as? Int
        else {
            throw ReplicationBenchError.verification("pdb checksum printed \(output.stdout)")
        }
        guard sha256 == expected.sha256, UInt64(lsn) == expected.lsn.rawValue else {
            throw ReplicationBenchError.verification(
                "the replica's \(Self.partition) is at LSN \(lsn) with sha256 \(sha256); the primary's at "
                    + "\(expected.lsn) with \(expected.sha256)")
        }
    }
}

/// The benchmark's writer: one durable write transaction per insert of one record.
final class PrimaryWriter {
    let partition: Partition
    /// The index of the next record written.
    var next: Int64 = 1
    private let key = UnsafeMutableRawBufferPointer.allocate(byteCount: Records.keySize, alignment: 8)
    private let value = UnsafeMutableRawBufferPointer.allocate(byteCount: Records.valueSize, alignment: 8)

    init(partition: Partition) { self.partition = partition }

    deinit {
        key.deallocate()
        value.deallocate()
    }

    /// Commits one record; returns its commit's LSN (this is the partition's only writer).
    @inline(__always)
    func commit() throws -> UInt64 {
        Records.write(next, key: key, value: value)
        next += 1
        let key = UnsafeRawBufferPointer(self.key)
        let value = UnsafeRawBufferPointer(self.value)
        try partition.write(durability: .durable) { tx in try tx.put(Records.table, key, value) }
        return partition.lastLSN.rawValue
    }

    /// Commits as fast as it can for `seconds`; returns commits per second.
    func flat(seconds: Double) throws -> Double {
        let start = monotonicNanoseconds()
        let end = start + Int64(seconds * 1e9)
        var commits = 0
        var now = start
        while now < end {
            _ = try commit()
            commits += 1
            now = monotonicNanoseconds()
        }
        return Double(commits) / (Double(now - start) / 1e9)
    }

    /// Commits on a Poisson schedule of `rate` a second for `seconds` (pgbench -R's), telling
    /// `recorder` when each returned; returns the achieved commits per second.
    func paced(rate: Double, seconds: Double, recorder: LagRecorder) throws -> Double {
        let start = monotonicNanoseconds()
        let end = start + Int64(seconds * 1e9)
        var schedule = PoissonSchedule(rate: rate, start: start, seed: UInt64(rate) &* 0x51_7CC1)
        var commits = 0
        while true {
            let at = schedule.advance()
            guard at < end else { break }
            sleep(untilMonotonic: at)
            guard monotonicNanoseconds() < end else { break }
            let lsn = try commit()
            recorder.committed(lsn: lsn, at: monotonicNanoseconds())
            commits += 1
        }
        return Double(commits) / seconds
    }
}

/// The primary's host, run on a task of its own; it refuses operator commands (the benchmark
/// reads `status()` directly).
final class PrimaryHost: Sendable {
    let host: ClusterHost
    let progress = ReplicaProgress()
    let recorder = LagRecorder()
    private let finished = DispatchSemaphore(value: 0)
    private let stopped = Atomic<Bool>(false)

    struct NoCommands: CommandRunning {
        func run(arguments: [String], input: [UInt8], host: ClusterHost) async -> CommandResult {
            CommandResult(stdout: [], stderr: Array("the benchmark's primary runs no commands\n".utf8), status: 1)
        }
    }

    init(configuration: HostConfiguration, database: Database, verbose: Bool) throws {
        var logger = Logger(label: "bench.primary")
        logger.logLevel = verbose ? .info : .warning
        do {
            host = try ClusterHost(
                configuration: configuration, database: database, commands: NoCommands(), logger: logger)
        } catch {
            throw ReplicationBenchError.setup("the primary's host: \(error)")
        }
        let progress = self.progress
        let recorder = self.recorder
        host.onAcknowledgement { acknowledgement in
            guard acknowledgement.partition == PartitionDBSide.partition,
                acknowledgement.replica == PartitionDBSide.replica
            else { return }
            let now = monotonicNanoseconds()
            recorder.acknowledged(lsn: acknowledgement.durableLSN.rawValue, at: now)
            progress.acknowledged(lsn: acknowledgement.durableLSN.rawValue, at: now)
        }
        let listening = DispatchSemaphore(value: 0)
        let failure = Shared<String?>(nil)
        let host = self.host
        let finished = self.finished
        Task {
            do {
                try await host.run(onListening: { _ in listening.signal() })
            } catch {
                failure.value = "\(error)"
                listening.signal()
            }
            finished.signal()
        }
        guard listening.wait(timeout: .now() + 30) == .success else {
            throw ReplicationBenchError.timeout("the primary's host did not listen within 30 s")
        }
        if let failure = failure.value {
            throw ReplicationBenchError.setup("the primary's host failed: \(failure)")
        }
    }

    /// `progress.wait`, with the primary's view of the replica in the error when it fails.
    @discardableResult
    func wait(forLSN lsn: UInt64, replica: Child, timeout: Double) throws -> Int64 {
        do {
            return try progress.wait(forLSN: lsn, replica: replica, timeout: timeout)
        } catch let error as ReplicationBenchError {
            let figures = (try? self.figures()).map {
                "the primary sees the replica \($0.state) at durable LSN \($0.durableLSN), \($0.lagCommits) commits "
                    + "behind, last error \($0.lastError ?? "none")"
            }
            throw ReplicationBenchError.setup("\(error)\n\(figures ?? "the primary has no figures of the replica")")
        }
    }

    /// The replica's figures of the benchmark's partition.
    func figures() throws -> ReplicationStatus.Replica {
        guard
            let partition = host.status().partitions.first(where: { $0.name == PartitionDBSide.partition }),
            let replica = partition.replicas?.first(where: { $0.host == PartitionDBSide.replica })
        else { throw ReplicationBenchError.setup("the primary's status has no replica \(PartitionDBSide.replica)") }
        return replica
    }

    /// Stops the host and waits for its threads. Idempotent.
    func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        host.stop()
        if finished.wait(timeout: .now() + 30) == .timedOut {
            printError("[partitiondb] the primary's host did not stop within 30 s\n")
            return
        }
        let done = DispatchSemaphore(value: 0)
        let host = self.host
        Task {
            await host.shutdown()
            done.signal()
        }
        _ = done.wait(timeout: .now() + 30)
    }
}

/// The replica's durable LSN as the primary heard it, and when it first reached a target.
final class ReplicaProgress: Sendable {
    private struct State {
        var durable: UInt64 = 0
        var target: UInt64 = .max
        var reachedAt: Int64? = nil
    }

    /// Protects the state; taken by the acknowledgement observer and by `wait`.
    private let state = Mutex(State())

    func acknowledged(lsn: UInt64, at time: Int64) {
        state.withLock { state in
            state.durable = max(state.durable, lsn)
            if state.reachedAt == nil, state.durable >= state.target { state.reachedAt = time }
        }
    }

    var durableLSN: UInt64 { state.withLock { $0.durable } }

    /// Waits until the replica has acknowledged `lsn`; returns the monotonic time the
    /// acknowledgement arrived. Fails when `timeout` seconds pass or the replica exits first.
    @discardableResult
    func wait(forLSN lsn: UInt64, replica: Child, timeout: Double) throws -> Int64 {
        state.withLock { state in
            state.target = lsn
            state.reachedAt = state.durable >= lsn ? monotonicNanoseconds() : nil
        }
        let deadline = monotonicNanoseconds() + Int64(timeout * 1e9)
        while monotonicNanoseconds() < deadline {
            if let reached = state.withLock({ $0.reachedAt }) { return reached }
            guard replica.isRunning else {
                throw ReplicationBenchError.setup("the replica exited; its log ends:\n\(replica.logTail())")
            }
            usleep(1_000)
        }
        throw ReplicationBenchError.timeout(
            "the replica did not acknowledge LSN \(lsn) within \(Int(timeout)) s (it is at \(durableLSN)); its log "
                + "ends:\n\(replica.logTail())")
    }
}

/// Samples the lag of the newest acknowledged commit every 10 ms, from 0.5 s into a steady run to
/// 0.5 s before its end: PostgreSQL's sampling of `replay_lag`, applied to PartitionDB.
final class NewestLagSampler: Sendable {
    /// Written by the sampling thread; read after `done`.
    private let samples = Shared<[Int64]>([])
    private let done = DispatchSemaphore(value: 0)

    init(recorder: LagRecorder, seconds: Double) {
        let start = monotonicNanoseconds()
        let samples = self.samples
        let done = self.done
        let thread = Thread {
            var at = start + 500_000_000
            let end = start + Int64((seconds - 0.5) * 1e9)
            while at < end {
                sleep(untilMonotonic: at)
                if let lag = recorder.newestLag { samples.value.append(lag) }
                at += 10_000_000
            }
            done.signal()
        }
        thread.start()
    }

    func finish() -> [Int64] {
        _ = done.wait(timeout: .now() + 30)
        return samples.value
    }
}

func fileSize(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.size] as? NSNumber)?.intValue ?? 0
}
