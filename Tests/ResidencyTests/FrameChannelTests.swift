import NIOCore
import NIOEmbedded
import XCTest

@testable import Residency

/// The frame codec in a channel pipeline, as connections use it (ByteToMessageHandler).
final class FrameChannelTests: XCTestCase {
    private func bytes(_ frames: [Frame]) -> ByteBuffer {
        ByteBuffer(bytes: frames.flatMap { $0.encoded() })
    }

    /// Several frames in one read all come out of that read, not one per later read: a replica
    /// under a steady stream receives batches several to a read, and a frame kept back waited
    /// for the next read (the replica fell behind by a frame a read, and acknowledgements
    /// reached the primary late).
    func testEveryFrameOfOneReadIsDeliveredByThatRead() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameCodec()))
        defer { _ = try? channel.finish() }
        let frames = (1...5).map { Frame(epoch: 1, .acknowledgement(durableLSN: UInt64($0))) }
        try channel.writeInbound(bytes(frames))
        var lsns: [UInt64] = []
        while let frame = try channel.readInbound(as: Frame.self) {
            guard case .acknowledgement(let lsn) = frame.message else { return XCTFail("\(frame.message)") }
            lsns.append(lsn)
        }
        XCTAssertEqual(lsns, [1, 2, 3, 4, 5])
    }

    /// A frame cut across reads comes out with the read that completes it, together with any
    /// whole frames after it.
    func testAFrameCutAcrossReadsComesOutWithTheReadThatCompletesIt() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameCodec()))
        defer { _ = try? channel.finish() }
        var all = bytes([
            Frame(epoch: 1, .heartbeat(lastLSN: 9, sentMilliseconds: 1)),
            Frame(epoch: 1, .acknowledgement(durableLSN: 10)),
            Frame(epoch: 1, .acknowledgement(durableLSN: 11)),
        ])
        let first = all.readSlice(length: 10)!
        try channel.writeInbound(first)
        XCTAssertNil(try channel.readInbound(as: Frame.self))
        try channel.writeInbound(all)
        var count = 0
        while try channel.readInbound(as: Frame.self) != nil { count += 1 }
        XCTAssertEqual(count, 3)
    }
}
