import Foundation

/// A TCP proxy on loopback that injects network faults between two hosts: it forwards bytes both
/// ways, and by its current mode delays them, cuts connections after some bytes (mid-frame),
/// drops every connection, or black-holes them (accepts and forwards nothing, never closes).
/// POSIX sockets and one thread per direction: it knows nothing of TLS or the protocol.
final class FaultProxy: @unchecked Sendable {
    enum Mode: Equatable {
        case pass
        /// Each chunk waits this long before it is forwarded.
        case delay(milliseconds: Int)
        /// Every connection is closed after this many bytes from upstream (then new ones are
        /// cut the same way).
        case cutAfter(bytes: Int)
        /// Open connections are closed and new ones are closed at once.
        case drop
        /// Bytes are read and thrown away; connections stay open.
        case blackHole
    }

    let port: Int
    private let upstreamPort: Int
    private let listener: Int32
    private let lock = NSLock()
    private var mode = Mode.pass
    private var sockets: Set<Int32> = []
    private var stopped = false
    private(set) var connections = 0

    init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = FaultProxy.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(listener, 64) == 0 else { throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(listener, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread { self.acceptLoop() }.start()
    }

    func set(_ mode: Mode) {
        let toClose: [Int32] = lock.withLock {
            self.mode = mode
            return mode == .drop ? Array(sockets) : []
        }
        for socket in toClose { shutdown(socket, Int32(SHUT_RDWR)) }
    }

    func stop() {
        let toClose: [Int32] = lock.withLock {
            stopped = true
            return Array(sockets)
        }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        for socket in toClose { shutdown(socket, Int32(SHUT_RDWR)) }
    }

    private var currentMode: Mode { lock.withLock { mode } }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else {
                if lock.withLock({ stopped }) { return }
                continue
            }
            if currentMode == .drop {
                close(client)
                continue
            }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = FaultProxy.loopback(port: upstreamPort)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else {
                close(client)
                close(upstream)
                continue
            }
            lock.withLock {
                sockets.insert(client)
                sockets.insert(upstream)
                connections += 1
            }
            let pair = Pair(client: client, upstream: upstream)
            Thread { self.pump(from: upstream, to: client, pair: pair, counting: true) }.start()
            Thread { self.pump(from: client, to: upstream, pair: pair, counting: false) }.start()
        }
    }

    /// The two sockets of one proxied connection, closed once when either direction ends.
    private final class Pair: @unchecked Sendable {
        let client: Int32
        let upstream: Int32
        private let lock = NSLock()
        private var ended = 0
        var forwardedFromUpstream = 0

        init(client: Int32, upstream: Int32) {
            self.client = client
            self.upstream = upstream
        }

        func end() {
            shutdown(client, Int32(SHUT_RDWR))
            shutdown(upstream, Int32(SHUT_RDWR))
            let last = lock.withLock {
                ended += 1
                return ended == 2
            }
            if last {
                close(client)
                close(upstream)
            }
        }
    }

    private func pump(from source: Int32, to target: Int32, pair: Pair, counting: Bool) {
        defer {
            lock.withLock {
                sockets.remove(source)
                sockets.remove(target)
            }
            pair.end()
        }
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return }
            var count = n
            switch currentMode {
            case .pass: break
            case .delay(let milliseconds): usleep(useconds_t(milliseconds * 1000))
            case .blackHole: continue
            case .drop: return
            case .cutAfter(let bytes):
                if counting {
                    let allowed = max(0, bytes - pair.forwardedFromUpstream)
                    if allowed == 0 { return }
                    count = min(count, allowed)
                }
            }
            var written = 0
            while written < count {
                let m = buffer.withUnsafeBytes { write(target, $0.baseAddress! + written, count - written) }
                if m < 0, errno == EINTR { continue }
                guard m > 0 else { return }
                written += m
            }
            if counting { pair.forwardedFromUpstream += count }
            if case .cutAfter(let bytes) = currentMode, counting, pair.forwardedFromUpstream >= bytes { return }
        }
    }
}
