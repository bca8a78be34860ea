import Foundation
import NIOCore
import PartitionDB
import Synchronization

/// The accepting side of a connection: an operator's command, or a replica's stream of a
/// partition this host is primary of (spec/replication.md#the-primary).
extension ClusterHost {
    /// The most page bytes in one batch.
    static let batchBytes = 4 << 20
    /// The most batches sent to one replica and not yet acknowledged (flow control).
    static let batchesInFlight = 2
    /// Bytes of a snapshot per chunk message.
    static let snapshotChunkBytes = 1 << 20
    static let handshakeTimeout = TimeAmount.seconds(10)
    /// How long a replica's `hello` waits for a promotion in progress here to finish.
    static let promotionWait = Duration.seconds(2)

    func serve(_ channel: NIOAsyncChannel<Frame, Frame>, handshake: EventLoopFuture<Void>) async {
        track(channel.channel)
        defer { untrack(channel.channel) }
        let timeout = channel.channel.eventLoop.scheduleTask(in: Self.handshakeTimeout) {
            channel.channel.close(promise: nil)
        }
        do {
            try await channel.executeThenClose { inbound, outbound in
                try await handshake.get()
                timeout.cancel()
                let peer = try await TLSFiles.peerIdentity(of: channel.channel)
                let connection = FrameConnection(peer: peer, channel: channel)
                var frames = inbound.makeAsyncIterator()
                guard let first = try await frames.next() else { return }
                switch first.message {
                case .hello(let version, let partition, let fileID, let lsn):
                    try await servePrimary(
                        connection, outbound: outbound, frames: frames, version: version, partition: partition,
                        fileID: fileID, replicaLSN: lsn, replicaEpoch: first.epoch)
                case .fence(let partition, let primary):
                    try await serveFence(
                        connection, outbound: outbound, epoch: first.epoch, partition: partition, primary: primary)
                case .request(let arguments, let input):
                    try await serveOperator(
                        connection, outbound: outbound, arguments: arguments, input: input, epoch: first.epoch)
                case .assignHome(let subject, let region):
                    guard await checkForwardedEpoch(first.epoch, of: Database.globalPartitionName, connection, outbound)
                    else { return }
                    try await serveHomeAssignment(connection, outbound: outbound, subject: subject, region: region)
                case .publishKey(let kid, let region, let entry):
                    guard await checkForwardedEpoch(first.epoch, of: Database.globalPartitionName, connection, outbound)
                    else { return }
                    try await serveKeyPublication(
                        connection, outbound: outbound, kid: kid, region: region, entry: entry)
                default:
                    await refuse(
                        connection, outbound, code: "unexpected_message",
                        "a connection starts with hello, fence, request, assign home or publish key")
                }
            }
        } catch {
            timeout.cancel()
            logger.debug("connection ended", metadata: ["error": "\(error)"])
        }
    }

    func refuse(
        _ connection: FrameConnection, _ outbound: NIOAsyncChannelOutboundWriter<Frame>, code: String,
        _ message: String,
        partition: String? = nil
    ) async {
        countRefusal(code: code)
        logger.warning(
            "refused",
            metadata: [
                "peer": "\(connection.peer)", "code": "\(code)", "partition": "\(partition ?? "-")",
                "reason": "\(message)",
            ])
        try? await outbound.write(Frame(epoch: epoch(of: partition ?? ""), .refusal(code: code, message: message)))
    }

    private func serveOperator(
        _ connection: FrameConnection, outbound: NIOAsyncChannelOutboundWriter<Frame>, arguments: [String],
        input: [UInt8], epoch: UInt64
    ) async throws {
        switch connection.peer {
        case .operator(let name):
            logger.info("command", metadata: ["operator": "\(name)", "command": "\(arguments.first ?? "")"])
        case .host(let id, _):
            // A host only forwards a write of a partition it replicates, to that partition's
            // primary (spec/replication.md#write-forwarding).
            guard let partition = commands.writtenPartition(arguments: arguments), let role = roles[partition],
                role.primary == configuration.host, role.members.contains(id)
            else {
                return await refuse(
                    connection, outbound, code: "not_an_operator",
                    "\(connection.peer) may only forward writes of a partition it replicates to its primary; other commands need an operator certificate (`pdb cert issue --operator`)"
                )
            }
            guard await checkForwardedEpoch(epoch, of: partition, connection, outbound) else { return }
            logger.info(
                "forwarded write",
                metadata: ["host": "\(id)", "partition": "\(partition)", "command": "\(arguments.first ?? "")"])
        }
        let result = await commands.run(arguments: arguments, input: input, host: self)
        for (stream, bytes) in [(UInt8(1), result.stdout), (UInt8(2), result.stderr)] {
            var offset = 0
            while offset < bytes.count {
                let end = min(bytes.count, offset + Self.snapshotChunkBytes)
                try await outbound.write(
                    Frame(epoch: 1, .output(stream: stream, bytes: Array(bytes[offset..<end]))))
                offset = end
            }
        }
        if case .host = connection.peer, let lsn = result.committedLSN {
            try await outbound.write(Frame(epoch: 1, .committed(lsn: lsn)))
        }
        try await outbound.write(Frame(epoch: 1, .exit(status: result.status)))
    }

    /// A write another host forwards carries its epoch of the partition: one lower than this
    /// host's comes from a host that has not learned of a promotion, one higher means this host
    /// is deposed; both are refused (`stale_epoch`), so a write is only ever taken at the epoch
    /// both hosts know.
    func checkForwardedEpoch(
        _ epoch: UInt64, of partition: String, _ connection: FrameConnection,
        _ outbound: NIOAsyncChannelOutboundWriter<Frame>
    ) async -> Bool {
        guard case .host = connection.peer else { return true }
        let known = self.epoch(of: partition)
        guard epoch != known else { return true }
        await refuse(
            connection, outbound, code: "stale_epoch",
            "\(connection.peer) forwarded a write of epoch \(epoch) of \(partition); \(configuration.host) is at epoch \(known)",
            partition: partition)
        return false
    }

    /// Checks who asks for what before a byte of the partition is sent, then streams.
    private func servePrimary(
        _ connection: FrameConnection, outbound: NIOAsyncChannelOutboundWriter<Frame>,
        frames: NIOAsyncChannelInboundStream<Frame>.AsyncIterator, version: UInt16, partition name: String,
        fileID: [UInt8], replicaLSN: UInt64, replicaEpoch: UInt64
    ) async throws {
        guard case .host(let replica, let replicaRegion) = connection.peer else {
            return await refuse(
                connection, outbound, code: "not_a_host", "an operator certificate cannot replicate a partition",
                partition: name)
        }
        guard version == Message.protocolVersion else {
            return await refuse(
                connection, outbound, code: "protocol_version",
                "this host speaks protocol \(Message.protocolVersion), the replica \(version)", partition: name)
        }
        // A replica fenced by this host's promotion connects at once, while the epoch is still
        // being made durable here: it waits for it (a few milliseconds) instead of being refused
        // and retrying after its backoff, which would delay the first quorum commit.
        if let role = roles[name], role.primary == configuration.host, role.serving == nil {
            let deadline = ContinuousClock.now + Self.promotionWait
            while role.serving == nil, role.primary == configuration.host, ContinuousClock.now < deadline,
                !stopping.load(ordering: .relaxed)
            {
                try await Task.sleep(for: .milliseconds(2))
            }
        }
        guard let role = roles[name], let serving = role.serving, let figures = serving.figures[replica] else {
            if let role = roles[name], role.primary != configuration.host, role.epoch > replicaEpoch {
                // A deposed primary, or a replica of one: it names the newer epoch's primary.
                countRefusal(code: "stale_epoch")
                try? await outbound.write(
                    Frame(epoch: role.epoch, .newerEpoch(partition: name, primary: role.primary)))
                return
            }
            let known = roles[name] != nil
            return await refuse(
                connection, outbound, code: known ? "not_a_replica" : "not_primary",
                known && roles[name]?.serving != nil
                    ? "\(replica) is not a configured replica of partition \(name) on \(configuration.host)"
                    : "\(configuration.host) is not the primary of partition \(name)", partition: name)
        }
        let log = serving.log
        guard replicaEpoch <= serving.epoch else {
            return await refuse(
                connection, outbound, code: "stale_epoch",
                "\(replica) holds epoch \(replicaEpoch) of \(name); this host leads only epoch \(serving.epoch)",
                partition: name)
        }
        // A copy of an older epoch that goes on past where this partition's history left that
        // epoch holds commits never made here: it is cut (spec/replication.md#rejoin).
        let cut: UInt64? =
            if replicaEpoch < serving.epoch, !fileID.isEmpty {
                try await pool.runIfActive {
                    let common = try self.database.partition(name).lastLSN(ofEpoch: replicaEpoch)?.rawValue ?? 0
                    return replicaLSN > common ? common : nil
                }
            } else { nil }
        guard name == Database.globalPartitionName || replicaRegion == configuration.region else {
            return await refuse(
                connection, outbound, code: "border",
                "partition \(name) of region \(configuration.region) is never sent to \(connection.peer)",
                partition: name)
        }
        guard configuration.hosts[replica]?.region == replicaRegion, role.members.contains(replica) else {
            return await refuse(
                connection, outbound, code: "identity_mismatch",
                "the configuration says \(replica) is of another region than its certificate", partition: name)
        }
        try await connection.closeWhenIdle(after: .seconds(Int64(configuration.peerTimeoutSeconds)))
        logger.info("replica connected", metadata: ["partition": "\(name)", "replica": "\(replica)"])
        figures.values.withLock {
            $0.state = "connected"
            $0.lastError = nil
        }
        defer { figures.values.withLock { $0.state = "disconnected" } }
        let sent = ManagedAtomicLSN()
        let window = AcknowledgementWindow()
        let channel = connection.channel.channel
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            // Batches go out from a task of their own; a failure there closes the connection,
            // which ends the reading of acknowledgements here.
            tasks.addTask {
                do {
                    try await self.stream(
                        name, serving: serving, to: outbound, figures: figures, sent: sent, window: window,
                        fileID: fileID, replicaLSN: replicaLSN, cut: cut)
                } catch {
                    figures.values.withLock { $0.lastError = "\(error)" }
                    channel.close(promise: nil)
                    throw error
                }
            }
            do {
                var frames = frames
                while let frame = try await frames.next() {
                    if case .newerEpoch(let partition, let primary) = frame.message, partition == name,
                        frame.epoch > serving.epoch
                    {
                        // This host is deposed: it stops shipping and follows `primary`.
                        _ = try await pool.runIfActive {
                            try self.adopt(epoch: frame.epoch, primary: primary, of: name)
                        }
                        throw ResidencyError.refused(
                            code: "stale_epoch",
                            message: "\(replica) knows epoch \(frame.epoch) of \(name), led by \(primary)")
                    }
                    guard frame.epoch == serving.epoch, !serving.deposed.load(ordering: .acquiring) else {
                        throw ResidencyError.refused(
                            code: "stale_epoch", message: "\(replica) streams epoch \(frame.epoch) of \(name)")
                    }
                    switch frame.message {
                    case .acknowledgement(let lsn):
                        guard lsn <= sent.value else {
                            throw ResidencyError.malformedMessage(reason: "acknowledgement of LSN \(lsn), never sent")
                        }
                        figures.values.withLock { $0.durableLSN = max($0.durableLSN, lsn) }
                        window.acknowledged(lsn)
                        serving.quorum?.acknowledged(replica: replica, durableLSN: lsn)
                        releaseRetained(serving)
                        acknowledgementObserver.notify(partition: name, replica: replica, durableLSN: lsn)
                    case .refusal(let code, let message):
                        throw ResidencyError.refused(code: code, message: message)
                    default:
                        throw ResidencyError.malformedMessage(reason: "a replica sent \(frame.message.type)")
                    }
                }
                throw ResidencyError.connection(address: replica, reason: "the replica closed the stream")
            } catch {
                tasks.cancelAll()
                window.close()
                log.wakeAll()
                figures.values.withLock { $0.lastError = $0.lastError ?? "\(error)" }
                logger.info(
                    "replica stream ended",
                    metadata: ["partition": "\(name)", "replica": "\(replica)", "reason": "\(error)"])
                throw error
            }
        }
    }

    private func stream(
        _ name: String, serving: PrimaryRole, to outbound: NIOAsyncChannelOutboundWriter<Frame>,
        figures: ReplicaFigures, sent: ManagedAtomicLSN, window: AcknowledgementWindow, fileID: [UInt8],
        replicaLSN: UInt64, cut: UInt64?
    ) async throws {
        let log = serving.log
        let epoch = serving.epoch
        var position: UInt64
        if let cut {
            try await outbound.write(Frame(epoch: epoch, .cut(commonLSN: cut)))
            position = try await sendSnapshot(name, to: outbound, figures: figures)
        } else if !log.retains(fileID: fileID, after: replicaLSN) {
            position = try await sendSnapshot(name, to: outbound, figures: figures)
        } else {
            position = replicaLSN
            let region = try database.partition(name).region.name
            try await outbound.write(Frame(epoch: epoch, .streamStart(fileID: fileID, region: region, after: position)))
        }
        var currentFile = log.figures.fileID
        sent.value = position
        figures.values.withLock { $0.state = "streaming" }
        var lastSend = ContinuousClock.now
        while !stopping.load(ordering: .relaxed), !Task.isCancelled, !serving.deposed.load(ordering: .acquiring) {
            // Flow control: while the replica is busy with earlier batches, commits gather in
            // the shipped log and go out as one batch (spec/replication.md#flow-control).
            await window.waitForRoom(limit: Self.batchesInFlight)
            if stopping.load(ordering: .relaxed) || Task.isCancelled { break }
            switch log.read(fileID: currentFile, after: position, maxBytes: Self.batchBytes) {
            case .batch(let batch):
                let message = ChangeBatch.message(
                    fileID: currentFile, firstLSN: batch.firstLSN, count: batch.count,
                    uncompressedLength: batch.uncompressedLength, frames: batch.frames)
                // The frame's size without encoding it twice: overhead, file id, LSN, count, length.
                let bytes = Frame.overhead + 1 + currentFile.count + 16 + batch.frames.count
                position = batch.lastLSN
                sent.value = position
                window.sent(through: position)
                try await outbound.write(Frame(epoch: epoch, message))
                figures.values.withLock {
                    $0.bytesShipped += UInt64(bytes)
                    $0.batchBytesShipped += UInt64(bytes)
                    $0.uncompressedBytesShipped += UInt64(batch.uncompressedLength)
                }
                metrics.shipped(bytes: bytes, partition: name, replica: figures.host)
                lastSend = .now
            case .caughtUp:
                if ContinuousClock.now - lastSend >= .seconds(1) {
                    let milliseconds = UInt64(Date().timeIntervalSince1970 * 1000)
                    try await outbound.write(
                        Frame(epoch: epoch, .heartbeat(lastLSN: position, sentMilliseconds: milliseconds)))
                    lastSend = .now
                }
                await log.waitForCommit(after: position)
            case .notRetained:
                figures.values.withLock { $0.state = "snapshot" }
                position = try await sendSnapshot(name, to: outbound, figures: figures)
                currentFile = log.figures.fileID
                sent.value = position
                window.reset()
                figures.values.withLock { $0.state = "streaming" }
            }
        }
        if serving.deposed.load(ordering: .acquiring) {
            throw ResidencyError.refused(code: "stale_epoch", message: "this host is deposed as primary of \(name)")
        }
    }

    /// Lets the retained log drop what every configured replica of the partition has
    /// acknowledged since this host started (spec/replication.md#retention).
    private func releaseRetained(_ serving: PrimaryRole) {
        let replicas = serving.figures.values
        guard !replicas.isEmpty else { return }
        let everyReplica = replicas.map { figures in figures.values.withLock { $0.durableLSN } }.min() ?? 0
        if everyReplica > 0 { serving.log.release(through: everyReplica) }
    }

}

/// The newest LSN sent on a stream, shared with the task that checks acknowledgements.
final class ManagedAtomicLSN: Sendable {
    private let storage = Atomic<UInt64>(0)
    var value: UInt64 {
        get { storage.load(ordering: .acquiring) }
        set { storage.store(newValue, ordering: .releasing) }
    }
}
