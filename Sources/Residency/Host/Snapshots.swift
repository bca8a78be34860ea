import Foundation
import NIOCore
import PartitionDB
import Synchronization

/// Snapshots (spec/replication.md#snapshots): how a primary streams a partition's pages to a
/// replica whose position is not retained, and how the replica writes them straight into its new
/// partition file and installs it. The pages are read once on the primary (no backup file) and
/// written once on the replica (no incoming file beside the partition's).
extension ClusterHost {
    /// How the primary encodes its snapshots' chunks: the pages as they are. Measured on the
    /// 2-core development machine, a 1 GiB catch-up over loopback took 2.7 s raw, 3.6 s with zstd
    /// level 1 and 3.5 s at level -5 (both ship 647 MiB): with both hosts on two cores, the CPU
    /// that compression takes costs more than the bytes it saves. zstd stays in the protocol for
    /// links slower than about 3 Gbit/s, where the 37% it saves would pay (spec/replication.md#snapshots).
    static let snapshotEncoding: (encoding: SnapshotEncoding, level: Int32) = (.pages, 1)

    /// Streams a snapshot of the partition (spec/replication.md#snapshots): its pages as of one
    /// commit, read under one read snapshot while writes go on, sent as they are read; returns its
    /// LSN. Nothing is written on this host. The next chunk is read on the pool while the one
    /// before is being sent. Heartbeats go out whenever a second passes without a chunk (a cold
    /// read can be slow), and a replica that takes no chunk for `peer_timeout_seconds` ends the
    /// stream, so a stalled replica cannot hold the read snapshot (and the log behind it) open.
    func sendSnapshot(
        _ name: String, to outbound: NIOAsyncChannelOutboundWriter<Frame>, figures: ReplicaFigures
    ) async throws -> UInt64 {
        figures.values.withLock {
            $0.state = "snapshot"
            // Its acknowledgements until now were of another file, or of none.
            $0.durableLSN = 0
        }
        let reader = try await pool.runIfActive { try self.database.partition(name).snapshotReader() }
        defer { reader.close() }
        let (encoding, level) = Self.snapshotEncoding
        let pageSize = reader.pageSize
        let maxPages = max(1, Self.snapshotChunkBytes / pageSize)
        let epoch = self.epoch(of: name)
        let timeout = Duration.seconds(configuration.peerTimeoutSeconds)
        // When a frame last went out, for the heartbeats and the stall check.
        let lastSent = SnapshotClock()
        let began = ContinuousClock.now
        let sentBytes = try await withThrowingTaskGroup(of: UInt64?.self) { tasks in
            tasks.addTask {
                try await outbound.write(
                    Frame(
                        epoch: epoch,
                        .snapshotBegin(
                            fileID: reader.fileID, region: reader.region.name, lsn: reader.lsn.rawValue,
                            pageSize: UInt32(pageSize), pageCount: reader.pageCount, encoding: encoding)))
                lastSent.mark()
                @Sendable func read(_ first: UInt32) -> Task<Frame?, any Error> {
                    Task {
                        try await self.pool.runIfActive {
                            guard let pages = try reader.nextChunk(maxPages: maxPages) else { return nil }
                            return Frame(
                                epoch: epoch,
                                try SnapshotChunk.message(
                                    firstPage: first, pages: pages, pageSize: pageSize, encoding: encoding,
                                    level: level))
                        }
                    }
                }
                var first: UInt32 = 0
                var pending = read(first)
                defer { pending.cancel() }
                var bytes: UInt64 = 0
                while let frame = try await pending.value {
                    guard case .snapshotChunk(_, let pages, let payload) = frame.message else { preconditionFailure() }
                    first += pages
                    pending = read(first)
                    try await outbound.write(frame)
                    lastSent.mark()
                    bytes += UInt64(Frame.overhead + 8 + payload.count)
                }
                try await outbound.write(Frame(epoch: epoch, .snapshotEnd))
                return bytes
            }
            tasks.addTask {
                while true {
                    try await Task.sleep(for: .seconds(1))
                    guard lastSent.sinceMark >= .seconds(1) else { continue }
                    let milliseconds = UInt64(Date().timeIntervalSince1970 * 1000)
                    try await outbound.write(
                        Frame(epoch: epoch, .heartbeat(lastLSN: 0, sentMilliseconds: milliseconds)))
                }
            }
            tasks.addTask {
                // Apart from the heartbeats: a write that waits for the replica waits here too.
                while true {
                    try await Task.sleep(for: .seconds(1))
                    if lastSent.sinceMark > timeout {
                        throw ResidencyError.connection(
                            address: figures.host,
                            reason: "the replica took no snapshot chunk for \(timeout.components.seconds) s")
                    }
                }
            }
            defer { tasks.cancelAll() }
            while let result = try await tasks.next() {
                if let bytes = result { return bytes }
            }
            preconditionFailure("the snapshot's sender ended without a result")
        }
        figures.values.withLock {
            $0.snapshotsSent += 1
            $0.bytesShipped += sentBytes
        }
        metrics.shipped(bytes: Int(sentBytes), partition: name, replica: figures.host)
        metrics.snapshotSent(partition: name, replica: figures.host)
        logger.info(
            "snapshot sent",
            metadata: [
                "partition": "\(name)", "lsn": "\(reader.lsn)", "pages": "\(reader.pageCount)",
                "bytes": "\(sentBytes)", "seconds": "\(ContinuousClock.now - began)",
            ])
        return reader.lsn.rawValue
    }

    /// Receives the chunks of a snapshot into a new partition file (the engine's
    /// `IncomingPartition`, which verifies each page as it is written) and, at `snapshot end`,
    /// installs it over the local copy. The copy stays as it was, and readable, until then; any
    /// failure removes the new file. Acknowledges LSN 0 every second meanwhile: the primary
    /// would otherwise hear nothing for as long as a large snapshot takes to arrive and install,
    /// and close the stream after peer_timeout_seconds.
    func receiveSnapshot(
        _ name: String, fileID: [UInt8], region: String, lsn: UInt64, pageSize: UInt32, pageCount: UInt32,
        encoding: SnapshotEncoding, frames: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<Frame>
    ) async throws {
        let epoch = self.epoch(of: name)
        let keepalive = Task {
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(1))
                try await outbound.write(Frame(epoch: epoch, .acknowledgement(durableLSN: 0)))
            }
        }
        defer { keepalive.cancel() }
        let incoming = try await pool.runIfActive {
            // What the snapshots of earlier versions wrote beside the partition, if one was cut short.
            try? FileManager.default.removeItem(atPath: self.legacyIncomingSnapshotPath(name))
            do {
                return try self.database.receivePartition(
                    name, pageSize: Int(pageSize), pageCount: pageCount, lsn: LSN(lsn), fileID: fileID,
                    region: name == Database.globalPartitionName ? .global : try Region(region), replace: true)
            } catch let error as PartitionDBError {
                throw ResidencyError.engine(error)
            }
        }
        defer { incoming.abandon() }
        var next: UInt32 = 0
        while let frame = try await frames.next() {
            switch frame.message {
            case .snapshotChunk(let first, let pages, let bytes):
                guard first == next else {
                    throw ResidencyError.malformedMessage(
                        reason: "a snapshot chunk from page \(first) where page \(next) was due")
                }
                next &+= pages
                try await pool.runIfActive {
                    let pages = try SnapshotChunk.pages(
                        bytes, pages: pages, pageSize: Int(pageSize), encoding: encoding)
                    do {
                        try incoming.write(pages: pages)
                    } catch let error as PartitionDBError {
                        throw ResidencyError.engine(error)
                    }
                }
            case .heartbeat:
                // The primary's keepalive while it reads; this side's acknowledgements run apart.
                continue
            case .snapshotEnd:
                try await pool.runIfActive { try self.install(name, incoming) }
                // No keepalive after the installed snapshot's own acknowledgement.
                keepalive.cancel()
                _ = await keepalive.result
                return
            case .refusal(let code, let message):
                throw ResidencyError.refused(code: code, message: message)
            default:
                throw ResidencyError.malformedMessage(reason: "a \(frame.message.type) inside a snapshot")
            }
        }
        throw ResidencyError.connection(address: name, reason: "the primary closed the stream mid-snapshot")
    }

    /// The incoming snapshot file of protocol version 1, in the data directory.
    private func legacyIncomingSnapshotPath(_ partition: String) -> String {
        (database.path as NSString).appendingPathComponent("\(partition).snapshot-incoming")
    }

    /// Closes the local copy (waiting briefly for readers), installs the received file over it
    /// (the engine checks that every page arrived, syncs and renames), and opens it again.
    private func install(_ name: String, _ incoming: IncomingPartition) throws {
        do {
            if try database.partitionNames().contains(name) {
                let partition = try database.partition(name)
                var attempts = 0
                while true {
                    do {
                        try partition.close()
                        break
                    } catch PartitionDBError.busy where attempts < 100 {
                        attempts += 1
                        usleep(50_000)
                    }
                }
            }
            try incoming.finish()
            _ = try database.partition(name)
        } catch let error as PartitionDBError {
            throw ResidencyError.engine(error)
        }
    }
}

/// When a snapshot's last frame went out, for its heartbeats and its stall check.
final class SnapshotClock: Sendable {
    private let start = ContinuousClock.now
    /// Nanoseconds from `start` to the last mark.
    private let marked = Atomic<Int64>(0)

    func mark() {
        let elapsed = (ContinuousClock.now - start).components
        marked.store(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000, ordering: .relaxed)
    }

    var sinceMark: Duration { ContinuousClock.now - start - .nanoseconds(marked.load(ordering: .relaxed)) }
}
