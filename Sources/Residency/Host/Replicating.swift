import Foundation
import NIOCore
import PartitionDB

/// The replica side (spec/replication.md#the-replica): for each partition this host holds a copy
/// of, connect to its primary, say where the copy stands, then install a snapshot or apply the
/// stream, commit by commit, acknowledging what is durable. Every message is checked before a
/// byte of it is written: its epoch, its file id, its LSNs, its region.
extension ClusterHost {
    /// Log frames after which a replica's copy checkpoints (the engine's default is 4,096). The
    /// apply of a batch, and so its acknowledgement, waits for the checkpoint it triggers; with
    /// an eighth of the frames each wait is about an eighth as long, which bounds the lag's tail
    /// (spec/replication.md#the-replica). The price is more checkpoints of fewer pages each;
    /// measured, the writer's rate with a replica did not change (Benchmarks/README.md).
    static let replicaCheckpointFrames = 512

    func replicate(_ placement: HostConfiguration.PartitionPlacement) async {
        let name = placement.name
        var delay = Duration.milliseconds(100)
        while !stopping.load(ordering: .relaxed) {
            replicaStates[name]?.withLock { $0.state = "connecting" }
            do {
                try await replicateOnce(placement)
                delay = .milliseconds(100)
            } catch {
                if stopping.load(ordering: .relaxed) { break }
                let code = (error as? ResidencyError)?.code
                replicaStates[name]?.withLock {
                    $0.state = code == "border" || code == "not_a_replica" ? "refused" : "connecting"
                    $0.lastError = "\(error)"
                }
                logger.warning("replication stopped", metadata: ["partition": "\(name)", "reason": "\(error)"])
            }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(2))
        }
    }

    /// The file id and LSN of the local copy, or an empty id when there is none.
    private func localCopy(_ name: String) throws -> (fileID: [UInt8], lsn: UInt64) {
        guard try database.partitionNames().contains(name) else { return ([], 0) }
        let partition = try database.partition(name)
        return (partition.fileID, partition.lastLSN.rawValue)
    }

    private func replicateOnce(_ placement: HostConfiguration.PartitionPlacement) async throws {
        let name = placement.name
        guard let primary = configuration.hosts[placement.primary] else { return }
        let connection = try await FrameTransport.connect(to: primary.address, tls: tls, group: group)
        track(connection.channel.channel)
        defer { untrack(connection.channel.channel) }
        guard connection.peer == .host(id: placement.primary, region: primary.region) else {
            countRefusal(code: "identity_mismatch")
            throw ResidencyError.refused(
                code: "identity_mismatch",
                message: "\(primary.address) is \(connection.peer), not \(placement.primary), the primary of \(name)")
        }
        try await connection.closeWhenIdle(after: .seconds(Int64(configuration.peerTimeoutSeconds)))
        // The region a copy of this partition may have here: the border, checked on every start.
        let allowedRegion = name == Database.globalPartitionName ? Region.global.name : configuration.region.name
        try await connection.run { inbound, outbound in
            var local = try await pool.runIfActive { try self.localCopy(name) }
            try await outbound.write(
                Frame(
                    epoch: epoch,
                    .hello(
                        protocolVersion: Message.protocolVersion, partition: name, fileID: local.fileID,
                        durableLSN: local.lsn)))
            var frames = inbound.makeAsyncIterator()
            var streaming = false
            while let frame = try await frames.next() {
                guard frame.epoch >= epoch else {
                    throw ResidencyError.refused(
                        code: "stale_epoch", message: "the primary sent epoch \(frame.epoch); this host knows \(epoch)")
                }
                switch frame.message {
                case .streamStart(let fileID, let region, let after):
                    try checkBorder(region, allowed: allowedRegion, name)
                    guard fileID == local.fileID, after == local.lsn else {
                        throw ResidencyError.malformedMessage(reason: "stream start at another file or LSN than asked")
                    }
                    streaming = true
                    replicaStates[name]?.withLock {
                        $0.state = "streaming"
                        $0.lastError = nil
                    }
                case .snapshotBegin(let fileID, let region, let lsn, let pageSize, let pageCount, let encoding):
                    try checkBorder(region, allowed: allowedRegion, name)
                    replicaStates[name]?.withLock { $0.state = "snapshot" }
                    try await receiveSnapshot(
                        name, fileID: fileID, region: region, lsn: lsn, pageSize: pageSize, pageCount: pageCount,
                        encoding: encoding, frames: &frames, outbound: outbound)
                    local = try await pool.runIfActive { try self.localCopy(name) }
                    guard local.fileID == fileID, local.lsn == lsn else {
                        throw ResidencyError.malformedMessage(
                            reason: "the snapshot is not the file or LSN it announced")
                    }
                    logger.info("snapshot installed", metadata: ["partition": "\(name)", "lsn": "\(lsn)"])
                    try await outbound.write(Frame(epoch: epoch, .acknowledgement(durableLSN: lsn)))
                    streaming = true
                    replicaStates[name]?.withLock {
                        $0.state = "streaming"
                        $0.lastError = nil
                    }
                case .batch(let fileID, let first, let count, let length, let compressed):
                    guard streaming, fileID == local.fileID else {
                        throw ResidencyError.malformedMessage(reason: "a batch of another partition file")
                    }
                    guard first == local.lsn + 1 else {
                        throw ResidencyError.malformedMessage(
                            reason: "a batch from LSN \(first) while the copy is at LSN \(local.lsn)")
                    }
                    let changes = try ChangeBatch.changes(
                        fileID: fileID, firstLSN: first, count: count, uncompressedLength: length,
                        compressed: compressed)
                    let newest = try await pool.runIfActive {
                        let partition = try self.database.partition(name)
                        partition.setAutoCheckpointFrames(Self.replicaCheckpointFrames)
                        // One commit for the batch, checked whole before a byte is written: a
                        // batch whose later commit fails (a page's checksum, its header) is
                        // refused whole; the pages its commits share are written once, with one
                        // fsync (spec/replication.md#batches).
                        try partition.apply(batch: changes, durability: .durable)
                        return partition.lastLSN.rawValue
                    }
                    local.lsn = newest
                    try await outbound.write(Frame(epoch: epoch, .acknowledgement(durableLSN: newest)))
                case .heartbeat:
                    // Always answered, so the primary hears from an idle replica, and from one
                    // waiting for a snapshot the primary is still taking (a large partition's
                    // takes longer than peer_timeout_seconds). While streaming, with the copy's
                    // LSN, one the primary has sent; before, with 0: the primary has sent none
                    // yet, and refuses an acknowledgement of an LSN it has not sent.
                    let lsn = streaming ? local.lsn : 0
                    try await outbound.write(Frame(epoch: epoch, .acknowledgement(durableLSN: lsn)))
                case .refusal(let code, let message):
                    throw ResidencyError.refused(code: code, message: message)
                default:
                    throw ResidencyError.malformedMessage(reason: "a primary sent \(frame.message.type)")
                }
            }
            throw ResidencyError.connection(
                address: primary.address.description, reason: "the primary closed the stream")
        }
    }

    private func checkBorder(_ region: String, allowed: String, _ name: String) throws {
        guard region == allowed else {
            countRefusal(code: "border")
            throw ResidencyError.refused(
                code: "border",
                message: "the primary offers partition \(name) of region \(region); this host holds only \(allowed)")
        }
    }
}
