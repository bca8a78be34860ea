import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A host's scrape address (`metrics_listen`, spec/config.md and spec/replication.md#metrics):
/// plain HTTP/1.1 with SwiftNIO, one request per connection. `GET /metrics` answers 200 with the
/// Prometheus text of the host's registry; any other path 404, another method on `/metrics`
/// 405. A request that does not parse, whose head is over 8 KiB or whose body is over 4 KiB gets
/// a 400 or a 413 and the connection is closed; so is a connection that has not been answered
/// within 10 s (a client that sends slowly or never reads). At most 32 connections are open at
/// once; more are closed as they are accepted.
final class MetricsEndpoint: Sendable {
    static let path = "/metrics"
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"
    static let connectionTimeout = TimeAmount.seconds(10)
    static let maxHeadBytes = 8 << 10
    static let maxBodyBytes = 4 << 10
    static let maxConnections = 32

    private let channel: any Channel
    private let connections: Connections
    /// The address bound.
    let address: HostAddress

    private init(channel: any Channel, connections: Connections, address: HostAddress) {
        self.channel = channel
        self.connections = connections
        self.address = address
    }

    /// Binds `address` and serves until `close()`. `render` runs on `pool`, never on an event
    /// loop (it reads the database's partitions). A bind failure is a configuration error of
    /// `file`'s `metrics_listen`.
    static func bind(
        _ address: HostAddress, file: String, group: any EventLoopGroup, pool: NIOThreadPool,
        render: @escaping @Sendable () -> [UInt8]
    ) async throws -> MetricsEndpoint {
        let connections = Connections()
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 64)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    // A failed initializer closes the connection it was given.
                    guard connections.open(channel) else {
                        return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel)
                    }
                    channel.closeFuture.whenComplete { _ in connections.closed(channel) }
                    return channel.eventLoop.makeCompletedFuture {
                        var limits = NIOHTTPDecoderLimitConfiguration()
                        limits.maxHeaderFieldSize = maxHeadBytes
                        limits.maxHeaderListSize = maxHeadBytes
                        limits.maxHeaderFieldCount = 64
                        let operations = channel.pipeline.syncOperations
                        try operations.configureHTTPServerPipeline(
                            withPipeliningAssistance: false, withErrorHandling: true,
                            withOutboundHeaderValidation: true, withEncoderConfiguration: .init(),
                            withDecoderLimitConfiguration: limits)
                        try operations.addHandler(MetricsRequestHandler(pool: pool, render: render))
                    }
                }
                .bind(host: address.host, port: address.port).get()
        } catch {
            throw ResidencyError.configuration(
                file: file, key: "metrics_listen",
                reason: "\(address) cannot be listened on (\(error)); choose a free address or remove the key")
        }
        let bound = HostAddress(host: address.host, port: channel.localAddress?.port ?? address.port)
        return MetricsEndpoint(channel: channel, connections: connections, address: bound)
    }

    /// Stops listening and closes every open connection.
    func close() {
        channel.close(promise: nil)
        for connection in connections.all() { connection.close(promise: nil) }
    }

    /// The open connections, at most `maxConnections`.
    private final class Connections: Sendable {
        /// Protects the dictionary only.
        private let channels = Mutex<[ObjectIdentifier: any Channel]>([:])

        /// Whether `channel` may be served: under the bound on open connections.
        func open(_ channel: any Channel) -> Bool {
            channels.withLock {
                guard $0.count < MetricsEndpoint.maxConnections else { return false }
                $0[ObjectIdentifier(channel)] = channel
                return true
            }
        }

        func closed(_ channel: any Channel) {
            _ = channels.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
        }

        func all() -> [any Channel] { channels.withLock { Array($0.values) } }
    }
}

/// Answers the one request of a connection, then closes it.
private final class MetricsRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case waiting
        case reading(HTTPRequestHead, bodyBytes: Int)
        /// A response is on its way; whatever else the client sends is ignored.
        case answered
    }

    private let pool: NIOThreadPool
    private let render: @Sendable () -> [UInt8]
    private var state = State.waiting
    private var deadline: Scheduled<Void>?

    init(pool: NIOThreadPool, render: @escaping @Sendable () -> [UInt8]) {
        self.pool = pool
        self.render = render
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: MetricsEndpoint.connectionTimeout) {
            channel.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch (unwrapInboundIn(data), state) {
        case (.head(let head), .waiting):
            state = .reading(head, bodyBytes: 0)
        case (.body(let buffer), .reading(let head, let bodyBytes)):
            let total = bodyBytes + buffer.readableBytes
            guard total <= MetricsEndpoint.maxBodyBytes else {
                return respond(context, .payloadTooLarge, "a request body is at most 4 KiB; a scrape has none\n")
            }
            state = .reading(head, bodyBytes: total)
        case (.end, .reading(let head, _)):
            answer(context, head)
        default:
            break
        }
    }

    /// A parse error: `HTTPServerProtocolErrorHandler` has sent its 400; nothing else is read.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        state = .answered
        context.close(promise: nil)
    }

    private func answer(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard path == MetricsEndpoint.path else {
            return respond(context, .notFound, "not found: this address serves GET \(MetricsEndpoint.path) only\n")
        }
        guard head.method == .GET else {
            return respond(
                context, .methodNotAllowed, "method not allowed: \(MetricsEndpoint.path) answers GET only\n",
                extraHeaders: [("Allow", "GET")])
        }
        state = .answered
        pool.runIfActive(eventLoop: context.eventLoop, render).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let bytes):
                self.write(
                    context, .ok, body: context.channel.allocator.buffer(bytes: bytes),
                    contentType: MetricsEndpoint.contentType, extraHeaders: [])
            case .failure:
                // The thread pool is shutting down with the host.
                self.write(
                    context, .serviceUnavailable,
                    body: context.channel.allocator.buffer(string: "the host is stopping\n"),
                    contentType: "text/plain; charset=utf-8", extraHeaders: [])
            }
        }
    }

    private func respond(
        _ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ message: String,
        extraHeaders: [(String, String)] = []
    ) {
        state = .answered
        write(
            context, status, body: context.channel.allocator.buffer(string: message),
            contentType: "text/plain; charset=utf-8", extraHeaders: extraHeaders)
    }

    /// Writes the whole response, then closes the connection once it has gone out.
    private func write(
        _ context: ChannelHandlerContext, _ status: HTTPResponseStatus, body: ByteBuffer, contentType: String,
        extraHeaders: [(String, String)]
    ) {
        guard context.channel.isActive else { return }
        var headers = HTTPHeaders([
            ("Content-Type", contentType), ("Content-Length", "\(body.readableBytes)"), ("Connection", "close"),
        ])
        headers.add(contentsOf: extraHeaders)
        let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
