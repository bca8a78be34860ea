import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import PartitionDB
import XCTest

@testable import Residency

/// A real replica (`pdb serve` of eu-2) against a primary that lies
/// (spec/replication.md#the-replica): once the real eu-1 is stopped, the test listens on its
/// address with its certificate and answers each of eu-2's connections for `users` with the next
/// hostile scenario: a batch out of LSN order, of another file id, with a wrong CRC-32C, of epoch
/// 0, with garbage page bytes (in its only commit, or in the second of two), and a stream or a
/// snapshot of another region. The batches are made of real commits, so a missing check would
/// change the copy. After each, eu-2's copy is still the committed state it had (same content
/// checksum and LSN, asked for again in its next `hello`) and its `replication status` names what
/// it refused; then the real eu-1 comes back and eu-2 follows it.
final class HostilePrimaryTests: PDBTestCase {
    private var servers: [String: Process] = [:]
    private var logs: [String: URL] = [:]
    private var fake: FakePrimary?
    private var cluster: String { root.appendingPathComponent("cluster").path }
    private var operatorTLS: String { cluster + "/operator" }

    override func tearDownWithError() throws {
        fake?.stop()
        for process in servers.values where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try super.tearDownWithError()
    }

    /// What the fake primary sends after eu-2's hello, and what eu-2 must say about it.
    private struct Scenario {
        var name: String
        var bytes: [UInt8]
        /// Words of eu-2's `last_error` for `users` once it has refused the scenario.
        var words: String
        /// A refusal at the border, counted in eu-2's `refusals`.
        var border = false
        /// Run by the fake primary if eu-2 has not closed the connection by the deadline.
        var probe: (@Sendable () -> String?)? = nil
    }

    func testAReplicaRefusesEveryLieOfAPrimaryAndStaysAtItsCommittedState() throws {
        let began = Date()
        let port = 20_000 + Int.random(in: 0..<400) * 100
        assertExit(try pdb("cluster", "init", cluster, "--regions", "eu:2", "--base-port", "\(port)"), 0)
        try start("eu-1")
        try start("eu-2")
        assertExit(try remote("home set", "eu-1", "alice", "eu"), 0)
        let lines = (0..<200).map {
            #"{"op":"put","table":"t","key":"k\#($0)","value":"value-\#($0)","owner":"alice"}"#
        }
        assertExit(
            try remote("apply", "eu-1", "users", stdin: (lines + [#"{"op":"commit"}"#]).joined(separator: "\n")), 0)
        for i in 0..<3 { assertExit(try remote("put", "eu-1", "users", "t", "p\(i)", "v\(i)", "--owner", "alice"), 0) }
        let committed = try converged(replica: "eu-2", to: try XCTUnwrap(try checksum("eu-1")))
        let lsn = try XCTUnwrap(
            (try JSONSerialization.jsonObject(with: Data(committed.utf8)) as? [String: Any])?["lsn"] as? Int)
        let at = UInt64(lsn)

        stop("eu-1")
        // Two real commits after `at`, made on a copy of the stopped eu-1: they fit eu-2's copy.
        let (fileID, next, snapshot) = try commits(after: at)
        let eu1 = try HostConfiguration.load("\(cluster)/hosts/eu-1/config.json")
        let fake = try FakePrimary(
            listen: eu1.listen, tls: try TLSFiles(directory: "\(cluster)/hosts/eu-1/tls"), partition: "users")
        self.fake = fake

        var random = SplitMix64(state: 0x5EED)
        func garbled(_ change: ChangeSet) -> ChangeSet {
            var copy = change
            copy.pages = change.pages.map { .init(number: $0.number, bytes: random.bytes($0.bytes.count)) }
            return copy
        }
        func frame(_ message: Message, epoch: UInt64 = 1) -> [UInt8] { Frame(epoch: epoch, message).encoded() }
        let streamStart = frame(.streamStart(fileID: fileID, region: "eu", after: at))
        let batch = try ChangeBatch.message([next[0]])
        var another = next[0]
        another.fileID = random.bytes(fileID.count)
        var corrupted = frame(batch)
        XCTAssertGreaterThan(corrupted.count, 100)
        // A byte of the compressed change set: inside the payload, outside the CRC's own bytes.
        corrupted[corrupted.count / 2] ^= 0x5A
        let marker = "MARKER-hostile-\(UUID().uuidString)"
        let chunk = Array(String(repeating: marker, count: 2_000).utf8)
        let replicaFolder = "\(cluster)/hosts/eu-2"
        let scenarios = [
            Scenario(
                name: "a batch out of LSN order", bytes: streamStart + frame(try ChangeBatch.message([next[1]])),
                words: "a batch from LSN \(at + 2) while the copy is at LSN \(at)"),
            Scenario(
                name: "garbage page bytes", bytes: streamStart + frame(try ChangeBatch.message([garbled(next[0])])),
                words: "fails its checksum"),
            Scenario(
                name: "a batch of another file id", bytes: streamStart + frame(try ChangeBatch.message([another])),
                words: "a batch of another partition file"),
            Scenario(name: "a wrong CRC-32C", bytes: streamStart + corrupted, words: "frame checksum mismatch"),
            Scenario(name: "epoch 0", bytes: streamStart + frame(batch, epoch: 0), words: "epoch 0"),
            Scenario(
                name: "a stream of region us", bytes: frame(.streamStart(fileID: fileID, region: "us", after: at)),
                words: "of region us; this host holds only eu", border: true),
            Scenario(
                name: "a snapshot of region us",
                bytes: frame(
                    .snapshotBegin(
                        fileID: fileID, region: "us", lsn: at + 1, pageSize: 4096,
                        pageCount: 2 * UInt32(chunk.count / 4096),
                        encoding: .pages))
                    + frame(.snapshotChunk(firstPage: 0, pages: UInt32(chunk.count / 4096), bytes: chunk))
                    + frame(
                        .snapshotChunk(
                            firstPage: UInt32(chunk.count / 4096), pages: UInt32(chunk.count / 4096), bytes: chunk)),
                words: "of region us; this host holds only eu", border: true,
                probe: {
                    (try? Self.filesContain(replicaFolder, marker)) == true
                        ? "the snapshot's chunks were written under \(replicaFolder)" : nil
                }),
            // A real snapshot of eu-1's users two commits on, but for one page whose bytes are not
            // the ones its checksum sealed; then the same snapshot without its last chunk, and with
            // a chunk of pages beyond its page count. Each is refused whole: the copy stays at its
            // LSN, and the new file is removed.
            Scenario(
                name: "a snapshot with a damaged page", bytes: snapshot.frames(damagingPage: 2) + frame(.snapshotEnd),
                words: "page 2 fails its check (checksum mismatch)"),
            Scenario(
                name: "a snapshot short of its pages",
                bytes: Array(snapshot.frames().dropLast(snapshot.lastChunk))
                    + frame(.snapshotEnd),
                words:
                    "only \(snapshot.pageCount - snapshot.lastChunkPages) of the announced \(snapshot.pageCount) pages arrived"
            ),
            Scenario(
                name: "a snapshot with pages beyond its count",
                bytes: snapshot.frames() + snapshot.extraChunk + frame(.snapshotEnd),
                words: "pages beyond the announced count of \(snapshot.pageCount)"),
            // One frame, two commits: the first whole, the second garbage. The batch is refused
            // whole, so not even its first commit is applied.
            Scenario(
                name: "a batch whose second commit is garbage",
                bytes: streamStart + frame(try ChangeBatch.message([next[0], garbled(next[1])])),
                words: "fails its checksum"),
        ]
        for scenario in scenarios {
            let before = try replicaStatus()
            let outcome = try XCTUnwrap(fake.play(scenario.bytes, probe: scenario.probe), "\(scenario.name): no hello")
            // The replica's own word for where its copy stands: unchanged.
            XCTAssertEqual(outcome.fileID, fileID, scenario.name)
            XCTAssertEqual(outcome.lsn, at, scenario.name)
            XCTAssertTrue(outcome.closedByReplica, "\(scenario.name): eu-2 kept the connection open")
            XCTAssertNil(outcome.probe, scenario.name)
            // Only the keepalive of a snapshot being received (LSN 0: nothing applied).
            XCTAssertEqual(
                outcome.answers.filter { $0 != .acknowledgement(durableLSN: 0) }, [], "\(scenario.name): eu-2 answered")
            XCTAssertFalse(
                FileManager.default.fileExists(atPath: "\(replicaFolder)/data/users.pdb.creating"),
                "\(scenario.name) left the incoming partition file")
            var status = before
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                status = try replicaStatus()
                let refused = !scenario.border || status.refusals == before.refusals + 1
                if refused, (status.users["last_error"] as? String ?? "").contains(scenario.words) { break }
                usleep(50_000)
            }
            let error = status.users["last_error"] as? String ?? ""
            XCTAssertTrue(error.contains(scenario.words), "\(scenario.name): last_error is \(error)")
            XCTAssertEqual(status.refusals, before.refusals + (scenario.border ? 1 : 0), scenario.name)
            XCTAssertEqual(status.users["last_lsn"] as? Int, lsn, scenario.name)
            XCTAssertEqual(try checksum("eu-2"), committed, "\(scenario.name) changed eu-2's copy")
            print("hostile primary: \(scenario.name): \(status.users["state"] as? String ?? "-"): \(error)")
        }
        XCTAssertFalse(try Self.filesContain(replicaFolder, marker), "a chunk of the refused snapshot was written")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(replicaFolder)/data/users.snapshot-incoming"))
        let log = try String(contentsOf: try XCTUnwrap(logs["eu-2"]), encoding: .utf8)
        XCTAssertTrue(
            log.split(separator: "\n").contains { $0.contains("replication stopped") && $0.contains("of region us") },
            "eu-2 did not log the border refusal")

        // The real primary again: eu-2 follows it from where it was.
        fake.stop()
        self.fake = nil
        try start("eu-1")
        assertExit(try remote("put", "eu-1", "users", "t", "after", "v", "--owner", "alice"), 0)
        let final = try converged(replica: "eu-2", to: try XCTUnwrap(try checksum("eu-1")))
        XCTAssertEqual(
            (try JSONSerialization.jsonObject(with: Data(final.utf8)) as? [String: Any])?["lsn"] as? Int, lsn + 1)
        stop("eu-2")
        assertExit(try pdb("check", "\(replicaFolder)/data"), 0)
        print("hostile primary: \(fake.connections) connections for users, \(Date().timeIntervalSince(began)) s")
    }

    /// The change sets of two commits after `lsn` to `users`, made on a copy of the stopped eu-1's
    /// data directory (which is at `lsn`): real commits, of its file id, as eu-1 would ship them;
    /// and the snapshot of that copy after them, as eu-1 would stream it.
    private func commits(after lsn: UInt64) throws -> (
        fileID: [UInt8], changes: [ChangeSet], snapshot: RecordedSnapshot
    ) {
        let scratch = root.appendingPathComponent("scratch").path
        try FileManager.default.copyItem(atPath: "\(cluster)/hosts/eu-1/data", toPath: scratch)
        let database = try Database.open(at: scratch, region: try Region("eu"))
        defer { try? database.close() }
        _ = try ResidencyDirectory(database: database)
        let users = try database.partition("users")
        XCTAssertEqual(users.lastLSN.rawValue, lsn)
        let observed = Observed()
        users.setCommitObserver { observed.append($0) }
        for i in 0..<2 {
            try users.write { tx in
                try tx.put("t", Array("hostile-\(i)".utf8), Array("not eu-1's".utf8), owner: try SubjectID("alice"))
            }
        }
        users.setCommitObserver(nil)
        let changes = observed.values
        XCTAssertEqual(changes.map(\.lsn.rawValue), [lsn + 1, lsn + 2])
        let reader = try users.snapshotReader()
        defer { reader.close() }
        var chunks: [[UInt8]] = []
        while let chunk = try reader.nextChunk(maxPages: 2) { chunks.append(chunk) }
        XCTAssertGreaterThan(chunks.count, 2)
        XCTAssertEqual(reader.lsn.rawValue, lsn + 2)
        return (
            users.fileID, changes,
            RecordedSnapshot(
                fileID: reader.fileID, lsn: reader.lsn.rawValue, pageSize: reader.pageSize, pageCount: reader.pageCount,
                chunks: chunks)
        )
    }

    // MARK: Hosts (as in ClusterTests)

    private func start(_ host: String) throws {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = ["serve", "--config", "\(cluster)/hosts/\(host)/config.json"]
        let log = root.appendingPathComponent("\(host)-\(servers.count).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: log)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        servers[host] = process
        logs[host] = log
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if try remote("info", host).status == 0 { return }
            guard process.isRunning else {
                return XCTFail("\(host) exited: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
            }
            usleep(100_000)
        }
        XCTFail("\(host) did not answer within 30 s")
    }

    private func stop(_ host: String) {
        guard let process = servers[host], process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
    }

    /// `pdb COMMAND pdb://HOST REST… --tls OPERATOR`.
    private func remote(_ command: String, _ host: String, _ rest: String..., stdin: String = "") throws -> RunResult {
        let configuration = try HostConfiguration.load("\(cluster)/hosts/\(host)/config.json")
        let words = command.split(separator: " ").map(String.init)
        return try run(
            words + ["pdb://\(configuration.listen)"] + rest + ["--tls", operatorTLS], stdin: stdin, timeout: 30)
    }

    /// `pdb checksum pdb://HOST users --json`, or nil when it fails.
    private func checksum(_ host: String) throws -> String? {
        let result = try remote("checksum", host, "users", "--json")
        return result.status == 0 ? result.stdout : nil
    }

    /// Waits until `replica`'s `users` sums as `expected`; returns its checksum.
    private func converged(replica: String, to expected: String) throws -> String {
        let deadline = Date().addingTimeInterval(20)
        var last: String?
        while Date() < deadline {
            last = try checksum(replica)
            if last == expected { break }
            usleep(100_000)
        }
        XCTAssertEqual(last, expected, "\(replica)'s users never matched")
        return try XCTUnwrap(last)
    }

    /// eu-2's `users` in `pdb replication status --json`, and its refusal count.
    private func replicaStatus() throws -> (users: [String: Any], refusals: Int) {
        let status = try remote("replication status", "eu-2", "--json")
        assertExit(status, 0)
        let object = try status.object()
        let partitions = try XCTUnwrap(object["partitions"] as? [[String: Any]])
        return (try XCTUnwrap(partitions.first { $0["name"] as? String == "users" }), object["refusals"] as? Int ?? -1)
    }
}

/// The pages of a real snapshot, in chunks, and the frames a primary would stream of them.
private struct RecordedSnapshot {
    var fileID: [UInt8]
    var lsn: UInt64
    var pageSize: Int
    var pageCount: UInt32
    var chunks: [[UInt8]]

    /// `snapshot begin` and every chunk, zstd-compressed, one frame each; with a byte of
    /// `damagingPage`'s contents changed when set (its checksum then fails).
    func frames(damagingPage: UInt32? = nil) -> [UInt8] {
        var bytes = Frame(
            epoch: 1,
            .snapshotBegin(
                fileID: fileID, region: "eu", lsn: lsn, pageSize: UInt32(pageSize), pageCount: pageCount,
                encoding: .zstd)
        ).encoded()
        var first: UInt32 = 0
        for var chunk in chunks {
            let pages = UInt32(chunk.count / pageSize)
            if let damagingPage, (first..<first + pages).contains(damagingPage) {
                chunk[Int(damagingPage - first) * pageSize + pageSize / 2] ^= 0x20
            }
            bytes += message(first, chunk)
            first += pages
        }
        return bytes
    }

    private func message(_ first: UInt32, _ pages: [UInt8]) -> [UInt8] {
        Frame(
            epoch: 1,
            try! SnapshotChunk.message(firstPage: first, pages: pages, pageSize: pageSize, encoding: .zstd)
        ).encoded()
    }

    /// Bytes of the last chunk's frame, and its pages.
    var lastChunk: Int { message(pageCount - lastChunkPages, chunks.last!).count }
    var lastChunkPages: UInt32 { UInt32(chunks.last!.count / pageSize) }
    /// The first chunk again, sent as the pages after the last.
    var extraChunk: [UInt8] { message(pageCount, chunks[0]) }
}

/// Change sets handed over by a commit observer.
private final class Observed: @unchecked Sendable {
    private let lock = NSLock()
    private var changes: [ChangeSet] = []

    func append(_ change: ChangeSet) { lock.withLock { changes.append(change) } }
    var values: [ChangeSet] { lock.withLock { changes } }
}

/// A primary that lies: it listens on a host's address with that host's certificate (so a
/// replica's identity check passes), reads each replication `hello`, refuses those of other
/// partitions, and answers those of `partition`, one connection each, with the bytes the test
/// hands to `play`: written past the frame encoder, so they need not be valid frames.
private final class FakePrimary: @unchecked Sendable {
    /// What one connection showed: the replica's hello, and what it did with the bytes.
    struct Outcome: Sendable {
        var fileID: [UInt8]
        var lsn: UInt64
        /// The replica closed the connection before the deadline.
        var closedByReplica = false
        /// Frames the replica sent after its hello (an acknowledgement: it applied something).
        var answers: [Message] = []
        /// What the play's probe found while the connection was still open at the deadline.
        var probe: String?
    }

    /// One scenario waiting for, or playing on, a connection.
    final class Play: @unchecked Sendable {
        let bytes: [UInt8]
        let probe: (@Sendable () -> String?)?
        let done = DispatchSemaphore(value: 0)
        private let lock = NSLock()
        private var result: Outcome?

        init(bytes: [UInt8], probe: (@Sendable () -> String?)?) {
            self.bytes = bytes
            self.probe = probe
        }

        func finish(_ outcome: Outcome) {
            lock.withLock { result = outcome }
            done.signal()
        }

        var outcome: Outcome? { lock.withLock { result } }
    }

    /// How long the replica has to close a connection after the scenario's bytes.
    static let closeDeadline = TimeAmount.seconds(8)

    private let partition: String
    private let lock = NSLock()
    // Protected by `lock`: the plays not yet taken, the open connections, the count of this
    // partition's connections, and whether `stop()` was called.
    private var pending: [Play] = []
    private var children: [ObjectIdentifier: any Channel] = [:]
    private var count = 0
    private var stopped = false
    private var server: (any Channel)?

    init(listen address: HostAddress, tls: TLSFiles, partition: String) throws {
        self.partition = partition
        let context = tls.serverContext
        server = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let (connection, handshake) = try FrameTransport.configure(
                        channel, tls: NIOSSLServerHandler(context: context))
                    Task { await self.serve(connection, handshake: handshake) }
                }
            }
            .bind(host: address.host, port: address.port).wait()
    }

    /// Connections of `partition` so far.
    var connections: Int { lock.withLock { count } }

    /// Plays `bytes` on the next connection of `partition`; nil when none came within `timeout`.
    func play(_ bytes: [UInt8], probe: (@Sendable () -> String?)? = nil, timeout: TimeInterval = 20) -> Outcome? {
        let play = Play(bytes: bytes, probe: probe)
        lock.withLock { pending.append(play) }
        if play.done.wait(timeout: .now() + timeout) == .timedOut {
            lock.withLock { pending.removeAll { $0 === play } }
        }
        return play.outcome
    }

    /// Stops listening and closes every connection; returns once the port is free.
    func stop() {
        let (server, open) = lock.withLock {
            stopped = true
            defer { self.server = nil }
            return (self.server, Array(children.values))
        }
        try? server?.close().wait()
        for channel in open { try? channel.close().wait() }
    }

    private func serve(_ connection: NIOAsyncChannel<Frame, Frame>, handshake: EventLoopFuture<Void>) async {
        let channel = connection.channel
        lock.withLock { children[ObjectIdentifier(channel)] = channel }
        defer { _ = lock.withLock { children.removeValue(forKey: ObjectIdentifier(channel)) } }
        try? await connection.executeThenClose { inbound, outbound in
            try await handshake.get()
            var frames = inbound.makeAsyncIterator()
            guard let first = try await frames.next(), case .hello(_, let name, let fileID, let lsn) = first.message
            else { return }
            guard name == partition else {
                try await outbound.write(
                    Frame(epoch: 1, .refusal(code: "not_primary", message: "this test serves only \(partition)")))
                return
            }
            lock.withLock { count += 1 }
            guard let play = await nextPlay(while: channel) else { return }
            var outcome = Outcome(fileID: fileID, lsn: lsn)
            defer { play.finish(outcome) }
            let expired = Expired()
            let deadline = channel.eventLoop.scheduleTask(in: Self.closeDeadline) {
                expired.fire(play.probe?())
                channel.close(promise: nil)
            }
            defer { deadline.cancel() }
            try await Self.writeRaw(play.bytes, to: channel)
            do {
                while let frame = try await frames.next() { outcome.answers.append(frame.message) }
            } catch {
                // A reset by the replica ends the connection as well as a close.
            }
            outcome.probe = expired.probe
            outcome.closedByReplica = !expired.fired
        }
    }

    /// The next play, once one is handed over, while the connection is open.
    private func nextPlay(while channel: any Channel) async -> Play? {
        while channel.isActive {
            let (stop, play) = lock.withLock { () -> (Bool, Play?) in
                stopped ? (true, nil) : (false, pending.isEmpty ? nil : pending.removeFirst())
            }
            if stop { return nil }
            if let play { return play }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    /// Writes `bytes` as they are: from the frame encoder's place in the pipeline on, so only TLS
    /// is below them.
    private static func writeRaw(_ bytes: [UInt8], to channel: any Channel) async throws {
        try await channel.eventLoop.flatSubmit {
            do {
                let encoder = try channel.pipeline.syncOperations.context(
                    handlerType: MessageToByteHandler<FrameCodec>.self)
                let promise = channel.eventLoop.makePromise(of: Void.self)
                encoder.writeAndFlush(NIOAny(ByteBuffer(bytes: bytes)), promise: promise)
                return promise.futureResult
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
        }.get()
    }

    /// Whether the close deadline passed, and what the probe found then.
    private final class Expired: @unchecked Sendable {
        private let lock = NSLock()
        private var value: (fired: Bool, probe: String?) = (false, nil)

        func fire(_ probe: String?) { lock.withLock { value = (true, probe) } }
        var fired: Bool { lock.withLock { value.fired } }
        var probe: String? { lock.withLock { value.probe } }
    }
}
