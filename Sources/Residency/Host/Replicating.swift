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

    /// Follows the current primary of the partition while this host is not it: connects,
    /// streams, and reconnects (to whichever host the newest epoch names) until the host stops.
    func follow(_ role: PartitionRole) async {
        let name = role.placement.name
        var delay = Duration.milliseconds(100)
        while !stopping.load(ordering: .relaxed) {
            let primary = role.primary
            if primary == configuration.host {
                // Primary here (or being promoted): nothing to follow until a newer epoch names another.
                try? await Task.sleep(for: .milliseconds(50))
                continue
            }
            role.withState { $0.replica.state = "connecting" }
            do {
                try await replicateOnce(role, from: primary)
                delay = .milliseconds(100)
            } catch {
                if stopping.load(ordering: .relaxed) { break }
                let code = (error as? ResidencyError)?.code
                role.withState {
                    $0.replica.state = code == "border" || code == "not_a_replica" ? "refused" : "connecting"
                    $0.replica.lastError = "\(error)"
                }
                logger.warning("replication stopped", metadata: ["partition": "\(name)", "reason": "\(error)"])
                // A newer epoch named another primary: follow it at once.
                if role.primary != primary { continue }
            }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(2))
        }
    }

    /// The file id, LSN and epoch of the local copy, or an empty id when there is none. Blocking:
    /// call it on the thread pool.
    func localCopy(_ name: String) throws -> (fileID: [UInt8], lsn: UInt64, epoch: UInt64) {
        guard try database.partitionNames().contains(name) else { return ([], 0, 1) }
        let partition = try database.partition(name)
        return (partition.fileID, partition.lastLSN.rawValue, partition.epoch)
    }

    private func replicateOnce(_ role: PartitionRole, from primaryID: String) async throws {
        let name = role.placement.name
        guard let primary = configuration.hosts[primaryID] else { return }
        let connection = try await FrameTransport.connect(to: primary.address, tls: tls, group: group)
        track(connection.channel.channel)
        defer { untrack(connection.channel.channel) }
        guard connection.peer == .host(id: primaryID, region: primary.region) else {
            await connection.close()
            countRefusal(code: "identity_mismatch")
            throw ResidencyError.refused(
                code: "identity_mismatch",
                message: "\(primary.address) is \(connection.peer), not \(primaryID), the primary of \(name)")
        }
        // A newer epoch closes the stream (`adopt`); one that came before it was registered is
        // seen here.
        let current = role.withState { state -> Bool in
            guard state.primary == primaryID else { return false }
            state.following = connection.channel.channel
            return true
        }
        guard current else {
            await connection.close()
            return
        }
        defer {
            role.withState { state in
                if state.following === connection.channel.channel { state.following = nil }
            }
        }
        do {
            try await connection.closeWhenIdle(after: .seconds(Int64(configuration.peerTimeoutSeconds)))
        } catch {
            await connection.close()
            throw error
        }
        // The region a copy of this partition may have here: the border, checked on every start.
        let allowedRegion = name == Database.globalPartitionName ? Region.global.name : configuration.region.name
        try await connection.run { inbound, outbound in
            var local = try await pool.runIfActive { try self.localCopy(name) }
            // The stream's epoch: at least what this host knows; a primary that sends a newer
            // one raises it here too.
            var epoch = role.epoch
            // The frame of a hello carries the copy's epoch: the primary decides by it whether
            // the copy has commits its history does not (spec/replication.md#rejoin).
            try await outbound.write(
                Frame(
                    epoch: local.epoch,
                    .hello(
                        protocolVersion: Message.protocolVersion, partition: name, fileID: local.fileID,
                        durableLSN: local.lsn)))
            var frames = inbound.makeAsyncIterator()
            var streaming = false
            /// Acknowledges only while the epoch it streams is still the newest this host knows
            /// and names this primary: once a fence is recorded, nothing more is acknowledged to
            /// an older epoch's primary.
            func acknowledge(_ lsn: UInt64) async throws {
                let current = role.withState { $0.epoch == epoch && $0.primary == primaryID }
                guard current else {
                    throw ResidencyError.refused(code: "stale_epoch", message: "a newer epoch of \(name) is known")
                }
                try await outbound.write(Frame(epoch: epoch, .acknowledgement(durableLSN: lsn)))
            }
            while let frame = try await frames.next() {
                let (known, leader) = role.withState { ($0.epoch, $0.primary) }
                guard frame.epoch >= known else {
                    // A deposed primary: tell it who leads now, then follow that one.
                    countRefusal(code: "stale_epoch")
                    try? await outbound.write(Frame(epoch: known, .newerEpoch(partition: name, primary: leader)))
                    throw ResidencyError.refused(
                        code: "stale_epoch",
                        message:
                            "\(primaryID) sent epoch \(frame.epoch) of \(name); this host knows \(known), led by \(leader)"
                    )
                }
                if frame.epoch > known {
                    // The primary this host follows leads a newer epoch than it knew.
                    guard
                        try await pool.runIfActive({ try self.adopt(epoch: frame.epoch, primary: primaryID, of: name) })
                    else {
                        throw ResidencyError.refused(code: "stale_epoch", message: "a newer epoch of \(name) is known")
                    }
                    role.withState { $0.following = connection.channel.channel }
                }
                epoch = frame.epoch
                if case .newerEpoch(let partition, let leader) = frame.message, partition == name {
                    // This host followed a deposed primary, which named the new one.
                    _ = try await pool.runIfActive { try self.adopt(epoch: frame.epoch, primary: leader, of: name) }
                    throw ResidencyError.refused(
                        code: "stale_epoch",
                        message: "\(primaryID) is deposed; \(leader) leads \(name) at epoch \(frame.epoch)")
                }
                switch frame.message {
                case .streamStart(let fileID, let region, let after):
                    try checkBorder(region, allowed: allowedRegion, name)
                    guard fileID == local.fileID, after == local.lsn else {
                        throw ResidencyError.malformedMessage(reason: "stream start at another file or LSN than asked")
                    }
                    streaming = true
                    role.withState {
                        $0.replica.state = "streaming"
                        $0.replica.lastError = nil
                    }
                case .snapshotBegin(let fileID, let region, let lsn, let pageSize, let pageCount, let encoding):
                    try checkBorder(region, allowed: allowedRegion, name)
                    role.withState { $0.replica.state = "snapshot" }
                    try await receiveSnapshot(
                        name, fileID: fileID, region: region, lsn: lsn, pageSize: pageSize, pageCount: pageCount,
                        encoding: encoding, frames: &frames, outbound: outbound)
                    local = try await pool.runIfActive { try self.localCopy(name) }
                    guard local.fileID == fileID, local.lsn == lsn else {
                        throw ResidencyError.malformedMessage(
                            reason: "the snapshot is not the file or LSN it announced")
                    }
                    logger.info("snapshot installed", metadata: ["partition": "\(name)", "lsn": "\(lsn)"])
                    try await acknowledge(lsn)
                    streaming = true
                    role.withState {
                        $0.replica.state = "streaming"
                        $0.replica.lastError = nil
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
                    try await acknowledge(newest)
                case .heartbeat:
                    // Always answered, so the primary hears from an idle replica, and from one
                    // waiting for a snapshot the primary is still taking (a large partition's
                    // takes longer than peer_timeout_seconds). While streaming, with the copy's
                    // LSN, one the primary has sent; before, with 0: the primary has sent none
                    // yet, and refuses an acknowledgement of an LSN it has not sent.
                    try await acknowledge(streaming ? local.lsn : 0)
                case .cut(let common):
                    // This copy has commits of an older epoch the primary's history does not:
                    // kept aside whole before the snapshot that follows replaces it.
                    guard !streaming, local.lsn > common else {
                        throw ResidencyError.malformedMessage(
                            reason: "a cut at LSN \(common) of a copy at \(local.lsn)")
                    }
                    let kept = try await pool.runIfActive {
                        try DeposedCopies.keep(
                            try self.database.partition(name), database: self.database.path, commonLSN: common)
                    }
                    logger.warning(
                        "commits cut",
                        metadata: [
                            "partition": "\(name)", "epoch": "\(kept.epoch)", "from": "\(kept.fromLSN)",
                            "to": "\(kept.toLSN)", "kept": "\(kept.file)",
                        ])
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
