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
                        fileID: fileID, replicaLSN: lsn)
                case .request(let arguments, let input):
                    try await serveOperator(connection, outbound: outbound, arguments: arguments, input: input)
                case .assignHome(let subject, let region):
                    try await serveHomeAssignment(connection, outbound: outbound, subject: subject, region: region)
                default:
                    await refuse(
                        connection, outbound, code: "unexpected_message",
                        "a connection starts with hello, request or assign home")
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
        try? await outbound.write(Frame(epoch: epoch, .refusal(code: code, message: message)))
    }

    private func serveOperator(
        _ connection: FrameConnection, outbound: NIOAsyncChannelOutboundWriter<Frame>, arguments: [String],
        input: [UInt8]
    ) async throws {
        switch connection.peer {
        case .operator(let name):
            logger.info("command", metadata: ["operator": "\(name)", "command": "\(arguments.first ?? "")"])
        case .host(let id, _):
            // A host only forwards a write of a partition it replicates, to that partition's
            // primary (spec/replication.md#write-forwarding).
            guard let partition = commands.writtenPartition(arguments: arguments),
                let placement = configuration.placement(of: partition), placement.primary == configuration.host,
                placement.replicas.contains(id)
            else {
                return await refuse(
                    connection, outbound, code: "not_an_operator",
                    "\(connection.peer) may only forward writes of a partition it replicates to its primary; other commands need an operator certificate (`pdb cert issue --operator`)"
                )
            }
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
                    Frame(epoch: epoch, .output(stream: stream, bytes: Array(bytes[offset..<end]))))
                offset = end
            }
        }
        if case .host = connection.peer, let lsn = result.committedLSN {
            try await outbound.write(Frame(epoch: epoch, .committed(lsn: lsn)))
        }
        try await outbound.write(Frame(epoch: epoch, .exit(status: result.status)))
    }

    /// Checks who asks for what before a byte of the partition is sent, then streams.
    private func servePrimary(
        _ connection: FrameConnection, outbound: NIOAsyncChannelOutboundWriter<Frame>,
        frames: NIOAsyncChannelInboundStream<Frame>.AsyncIterator, version: UInt16, partition name: String,
        fileID: [UInt8], replicaLSN: UInt64
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
        guard let placement = configuration.placement(of: name), let log = shipped[name],
            let figures = replicaFigures[name]?[replica]
        else {
            let known = configuration.placement(of: name) != nil
            return await refuse(
                connection, outbound, code: known ? "not_a_replica" : "not_primary",
                known && shipped[name] != nil
                    ? "\(replica) is not a configured replica of partition \(name) on \(configuration.host)"
                    : "\(configuration.host) is not the primary of partition \(name)", partition: name)
        }
        guard name == Database.globalPartitionName || replicaRegion == configuration.region else {
            return await refuse(
                connection, outbound, code: "border",
                "partition \(name) of region \(configuration.region) is never sent to \(connection.peer)",
                partition: name)
        }
        guard configuration.hosts[replica]?.region == replicaRegion, placement.replicas.contains(replica) else {
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
                        name, log: log, to: outbound, figures: figures, sent: sent, window: window,
                        fileID: fileID, replicaLSN: replicaLSN)
                } catch {
                    figures.values.withLock { $0.lastError = "\(error)" }
                    channel.close(promise: nil)
                    throw error
                }
            }
            do {
                var frames = frames
                while let frame = try await frames.next() {
                    switch frame.message {
                    case .acknowledgement(let lsn):
                        guard lsn <= sent.value else {
                            throw ResidencyError.malformedMessage(reason: "acknowledgement of LSN \(lsn), never sent")
                        }
                        figures.values.withLock { $0.durableLSN = max($0.durableLSN, lsn) }
                        window.acknowledged(lsn)
                        quorums[name]?.acknowledged(replica: replica, durableLSN: lsn)
                        releaseRetained(name, log: log)
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
        _ name: String, log: ShippedLog, to outbound: NIOAsyncChannelOutboundWriter<Frame>, figures: ReplicaFigures,
        sent: ManagedAtomicLSN, window: AcknowledgementWindow, fileID: [UInt8], replicaLSN: UInt64
    ) async throws {
        var position: UInt64
        if !log.retains(fileID: fileID, after: replicaLSN) {
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
        while !stopping.load(ordering: .relaxed), !Task.isCancelled {
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
    }

    /// Lets the retained log drop what every configured replica of the partition has
    /// acknowledged since this host started (spec/replication.md#retention).
    private func releaseRetained(_ name: String, log: ShippedLog) {
        guard let replicas = replicaFigures[name]?.values, !replicas.isEmpty else { return }
        let everyReplica = replicas.map { figures in figures.values.withLock { $0.durableLSN } }.min() ?? 0
        if everyReplica > 0 { log.release(through: everyReplica) }
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
