import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// A connection that carries `Frame`s over mutual TLS, with the peer's verified identity.
/// Built on NIOAsyncChannel: read with `for try await frame in inbound`, write with `send`.
public struct FrameConnection: Sendable {
    public let peer: PeerIdentity
    let channel: NIOAsyncChannel<Frame, Frame>

    /// Runs `body` with the connection's frames in and out, then closes it.
    public func run<T: Sendable>(
        _ body: (NIOAsyncChannelInboundStream<Frame>, NIOAsyncChannelOutboundWriter<Frame>) async throws -> T
    ) async throws -> T {
        try await channel.executeThenClose { inbound, outbound in try await body(inbound, outbound) }
    }

    /// Closes a connection that will not be `run`: every connection must end through
    /// `executeThenClose`, or its writer traps when freed (NIOAsyncWriter, in debug builds).
    func close() async {
        try? await channel.executeThenClose { _, _ in }
    }

    public var remoteAddress: String { channel.channel.remoteAddress?.description ?? "unknown" }

    /// Closes the connection when nothing arrives for `timeout`: a replication stream, where
    /// each side hears from the other at least every second (batches or heartbeats one way,
    /// acknowledgements the other), so that a black-holed network ends the stream and the
    /// replica connects anew. (Not for operator commands, which may run longer in silence.)
    func closeWhenIdle(after timeout: TimeAmount) async throws {
        try await channel.channel.pipeline.addHandlers(
            [IdleStateHandler(readTimeout: timeout), IdleCloser()], position: .first)
    }
}

/// Closes the channel on `IdleStateHandler`'s read timeout.
final class IdleCloser: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

/// Decodes frames (`FrameDecoder`) from TLS plaintext, and encodes them back.
final class FrameCodec: ByteToMessageDecoder, MessageToByteEncoder {
    typealias InboundOut = Frame
    typealias OutboundIn = Frame
    private var decoder = FrameDecoder()

    /// Takes every byte read into the frame decoder and passes on every whole frame they
    /// complete. All of them, not one: `ByteToMessageHandler` calls `decode` again only while
    /// its buffer holds bytes, and this has taken them all, so a frame left in the decoder would
    /// wait for the next read, and under a steady stream (several frames per read) the backlog
    /// would grow by a frame a read.
    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if buffer.readableBytes > 0, let bytes = buffer.readBytes(length: buffer.readableBytes) {
            decoder.append(bytes)
        }
        while let frame = try decoder.next() {
            context.fireChannelRead(wrapInboundOut(frame))
        }
        return .needMoreData
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }

    func encode(data: Frame, out: inout ByteBuffer) throws {
        out.writeBytes(data.encoded())
    }
}

/// Completes a promise when the TLS handshake has completed (or fails it with the error that
/// ended the connection first), so nothing is sent before the peer is verified.
final class HandshakeWaiter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let promise: EventLoopPromise<Void>

    init(promise: EventLoopPromise<Void>) { self.promise = promise }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event { promise.succeed(()) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        promise.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ResidencyError.connection(address: "peer", reason: "closed during the TLS handshake"))
        context.fireChannelInactive()
    }

    /// A connection torn down before it was active still completes the promise (a completed
    /// promise ignores a second result).
    func handlerRemoved(context: ChannelHandlerContext) {
        promise.fail(ResidencyError.connection(address: "peer", reason: "closed during the TLS handshake"))
    }
}

public enum FrameTransport {
    /// Adds TLS, the handshake waiter and the frame codec; returns the async channel and the
    /// handshake's future. Runs on the channel's event loop.
    static func configure(_ channel: Channel, tls: NIOSSLHandler) throws -> (
        NIOAsyncChannel<Frame, Frame>, EventLoopFuture<Void>
    ) {
        let handshake = channel.eventLoop.makePromise(of: Void.self)
        let operations = channel.pipeline.syncOperations
        try operations.addHandler(tls)
        try operations.addHandler(HandshakeWaiter(promise: handshake))
        try operations.addHandler(ByteToMessageHandler(FrameCodec()))
        try operations.addHandler(MessageToByteHandler(FrameCodec()))
        return (try NIOAsyncChannel(wrappingChannelSynchronously: channel), handshake.futureResult)
    }

    /// Connects to `address` and completes the handshake; the server's identity is returned for
    /// the caller to check.
    public static func connect(
        to address: HostAddress, tls: TLSFiles, group: EventLoopGroup, timeout: TimeAmount = .seconds(10)
    ) async throws -> FrameConnection {
        do {
            let (channel, handshake) = try await ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                .connect(host: address.host, port: address.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try configure(
                            channel, tls: try NIOSSLClientHandler(context: tls.clientContext, serverHostname: nil))
                    }
                }
            do {
                try await handshake.get()
                let peer = try await TLSFiles.peerIdentity(of: channel.channel)
                return FrameConnection(peer: peer, channel: channel)
            } catch {
                // An async channel must be finished, even one that never carried a frame.
                try? await channel.executeThenClose { _, _ in }
                throw error
            }
        } catch let error as ResidencyError {
            throw error
        } catch {
            throw ResidencyError.connection(address: address.description, reason: "\(error)")
        }
    }
}
