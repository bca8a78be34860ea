import Foundation
import Residency
import XCTest

/// The metrics of real `pdb serve` hosts (spec/replication.md#metrics), scraped over a real
/// socket from the `metrics_listen` address `pdb cluster init` writes, against what
/// `pdb replication status --json` says; and the endpoint's answers to what is not a scrape.
final class MetricsEndpointTests: PDBTestCase {
    private var servers: [String: Process] = [:]
    private var cluster: String { root.appendingPathComponent("cluster").path }
    private var operatorTLS: String { cluster + "/operator" }

    override func tearDownWithError() throws {
        for process in servers.values where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try super.tearDownWithError()
    }

    func testAScrapeAgreesWithReplicationStatusAndOddRequestsAreRefused() throws {
        // Hosts eu-1 (primary) and eu-2 (replica), on a port range of their own.
        let basePort = 20_000 + Int.random(in: 0..<400) * 100 + 50
        let layout = try pdb("cluster", "init", cluster, "--regions", "eu:2", "--base-port", "\(basePort)", "--json")
        assertExit(layout, 0)
        let hosts = try XCTUnwrap(try layout.object()["hosts"] as? [[String: Any]])
        XCTAssertEqual(
            hosts.map { $0["metrics"] as? String },
            ["http://127.0.0.1:\(basePort + 2)/metrics", "http://127.0.0.1:\(basePort + 3)/metrics"])
        let primary = try configuration("eu-1")
        let replica = try configuration("eu-2")
        let primaryMetrics = try XCTUnwrap(primary.metricsListen)
        XCTAssertEqual(primaryMetrics, HostAddress(host: "127.0.0.1", port: basePort + 2))

        // A metrics address that cannot be bound stops `pdb serve` with the key named.
        let file = "\(cluster)/hosts/eu-2/config.json"
        let original = try Data(contentsOf: URL(fileURLWithPath: file))
        let blocker = try Listener()
        defer { blocker.stop() }
        try editConfig("eu-2") { $0["metrics_listen"] = "127.0.0.1:\(blocker.port)" }
        let refused = try run(["serve", "--config", file], timeout: 30)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("metrics_listen 127.0.0.1:\(blocker.port) cannot be"), refused.stderr)
        try original.write(to: URL(fileURLWithPath: file))

        try start("eu-1", primary)
        try start("eu-2", replica)
        assertExit(try remote("home set", primary, "alice", "eu"), 0)
        for i in 0..<20 {
            assertExit(try remote("put", primary, "users", "t", "k\(i)", "v\(i)", "--owner", "alice"), 0)
        }
        // Converged: the replica acknowledged the primary's last LSN.
        var users: [String: Any] = [:]
        var copy: [String: Any] = [:]
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            users = try statusPartition(primary, "users")
            copy = try statusPartition(replica, "users")
            let durable = (users["replicas"] as? [[String: Any]])?.first?["durable_lsn"] as? Int
            if durable == users["last_lsn"] as? Int, copy["last_lsn"] as? Int == durable,
                copy["state"] as? String
                    == "streaming"
            {
                break
            }
            usleep(100_000)
        }
        let lastLSN = try XCTUnwrap(users["last_lsn"] as? Int)
        let shipped = try XCTUnwrap((users["replicas"] as? [[String: Any]])?.first)
        XCTAssertEqual(shipped["durable_lsn"] as? Int, lastLSN, "eu-2 never acknowledged eu-1's last LSN")

        let scrape = try HTTPExchange.run(port: primaryMetrics.port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(scrape.status, 200)
        XCTAssertEqual(scrape.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        let figures = try Self.samples(scrape.body)
        let labels = #"partition="users",replica="eu-2""#
        XCTAssertEqual(figures[#"pdb_partition_last_lsn{partition="users",role="primary"}"#], Double(lastLSN))
        XCTAssertEqual(figures[#"pdb_partition_epoch{partition="users",role="primary"}"#], 1)
        XCTAssertEqual(figures[#"pdb_partition_role{partition="users",role="primary"}"#], 1)
        XCTAssertEqual(figures["pdb_replica_durable_lsn{\(labels)}"], Double(lastLSN))
        XCTAssertEqual(figures["pdb_replica_connected{\(labels)}"], 1)
        XCTAssertEqual(figures["pdb_replica_lag_commits{\(labels)}"], 0)
        XCTAssertEqual(figures["pdb_replica_lag_bytes{\(labels)}"], 0)
        let bytes = try XCTUnwrap(figures["pdb_replica_shipped_bytes_total{\(labels)}"])
        XCTAssertGreaterThan(bytes, 0)
        XCTAssertEqual(bytes, Double(try XCTUnwrap(shipped["bytes_shipped"] as? Int)))
        // eu-2 had no copy of users: it joined by snapshot.
        XCTAssertEqual(
            figures["pdb_replica_snapshots_sent_total{\(labels)}"],
            Double(try XCTUnwrap(shipped["snapshots_sent"] as? Int)))
        XCTAssertGreaterThanOrEqual(figures["pdb_replica_snapshots_sent_total{\(labels)}"] ?? 0, 1)
        XCTAssertEqual(
            figures["pdb_replica_compression_ratio{\(labels)}"],
            Double(try XCTUnwrap(shipped["compression_ratio_percent"] as? Int)) / 100)
        XCTAssertEqual(
            figures[#"pdb_partition_retained_log_bytes{partition="users"}"#],
            Double(try XCTUnwrap(users["retained_bytes"] as? Int)))
        XCTAssertEqual(figures[#"pdb_refusals_total{code="border"}"#], 0)
        XCTAssertNotNil(figures[#"pdb_replica_durable_lsn{partition="global",replica="eu-2"}"#])
        XCTAssertTrue(scrape.body.contains("# TYPE pdb_replica_shipped_bytes_total counter\n"), scrape.body)

        // The replica's side: its copy's applied LSN and stream.
        let replicaScrape = try HTTPExchange.run(
            port: try XCTUnwrap(replica.metricsListen).port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(replicaScrape.status, 200)
        let replicaFigures = try Self.samples(replicaScrape.body)
        XCTAssertEqual(replicaFigures[#"pdb_copy_applied_lsn{partition="users"}"#], Double(lastLSN))
        XCTAssertEqual(replicaFigures[#"pdb_copy_connected{partition="users"}"#], 1)
        XCTAssertEqual(replicaFigures[#"pdb_partition_role{partition="users",role="replica"}"#], 1)
        XCTAssertNil(replicaFigures["pdb_replica_durable_lsn{\(labels)}"])

        // What is not a scrape: another path, another method, bytes that are not HTTP, a head
        // over the limit. Each is answered and closed; the host goes on serving.
        let port = primaryMetrics.port
        XCTAssertEqual(try HTTPExchange.run(port: port, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").status, 404)
        let post = try HTTPExchange.run(port: port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        XCTAssertEqual(post.status, 405)
        XCTAssertEqual(post.headers["allow"], "GET")
        XCTAssertEqual(try HTTPExchange.run(port: port, "\u{1}\u{2} garbage \u{7f}\r\n\r\n").status, 400)
        let huge = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: \(String(repeating: "a", count: 20_000))\r\n\r\n"
        XCTAssertEqual(try HTTPExchange.run(port: port, huge).status, 400)
        let body =
            "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n\(String(repeating: "b", count: 10_000))"
        XCTAssertEqual(try HTTPExchange.run(port: port, body).status, 413)
        XCTAssertEqual(try HTTPExchange.run(port: port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n").status, 200)
        XCTAssertTrue(try XCTUnwrap(servers["eu-1"]).isRunning)
        assertExit(try remote("info", primary), 0)
    }

    // MARK: - Hosts

    private func configuration(_ host: String) throws -> HostConfiguration {
        try HostConfiguration.load("\(cluster)/hosts/\(host)/config.json")
    }

    private func start(_ host: String, _ configuration: HostConfiguration) throws {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = ["serve", "--config", configuration.file]
        let log = root.appendingPathComponent("\(host).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: log)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        servers[host] = process
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if try remote("info", configuration).status == 0 { return }
            guard process.isRunning else {
                return XCTFail("\(host) exited: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
            }
            usleep(100_000)
        }
        XCTFail("\(host) did not answer within 30 s")
    }

    /// `pdb COMMAND pdb://HOST REST… --tls OPERATOR`.
    private func remote(_ command: String, _ host: HostConfiguration, _ rest: String...) throws -> RunResult {
        let words = command.split(separator: " ").map(String.init)
        return try run(words + ["pdb://\(host.listen)"] + rest + ["--tls", operatorTLS], timeout: 60)
    }

    /// The partition `name` of `pdb replication status --json`.
    private func statusPartition(_ host: HostConfiguration, _ name: String) throws -> [String: Any] {
        let status = try remote("replication status", host, "--json")
        assertExit(status, 0)
        let partitions = try XCTUnwrap(try status.object()["partitions"] as? [[String: Any]])
        return try XCTUnwrap(partitions.first { $0["name"] as? String == name })
    }

    private func editConfig(_ host: String, _ edit: (inout [String: Any]) -> Void) throws {
        let file = "\(cluster)/hosts/\(host)/config.json"
        var object = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
        edit(&object)
        try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: file))
    }

    /// The samples of a Prometheus text page by `name{labels}`; every line is a comment or a
    /// sample with a number.
    private static func samples(_ text: String) throws -> [String: Double] {
        var result: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let space = try XCTUnwrap(line.lastIndex(of: " "), "not a sample: \(line)")
            let value = try XCTUnwrap(Double(line[line.index(after: space)...]), "not a number: \(line)")
            result[String(line[..<space])] = value
        }
        return result
    }
}

/// One HTTP exchange over a plain POSIX socket: sends the request's bytes, reads until the
/// server closes (it closes after every answer), with 5 s timeouts on every send and receive.
private struct HTTPExchange {
    var status: Int
    /// Header names lowercased.
    var headers: [String: String]
    var body: String

    static func run(port: Int, _ request: String) throws -> HTTPExchange {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        let bytes = Array(request.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            // The server may answer and close before it has read everything (a body too large).
            if n <= 0 { break }
            sent += n
        }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                response += buffer[..<n]
            } else if n == 0 || errno == ECONNRESET {
                break
            } else {
                throw POSIXError(.ETIMEDOUT)
            }
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw POSIXError(.EBADMSG) }
        let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        let statusWords = lines[0].split(separator: " ")
        guard statusWords.count >= 2, statusWords[0].hasPrefix("HTTP/1."), let status = Int(statusWords[1]) else {
            throw POSIXError(.EBADMSG)
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces)
        }
        return HTTPExchange(status: status, headers: headers, body: String(text[split.upperBound...]))
    }
}

/// A listening socket on a free loopback port, to take an address from `pdb serve`.
private final class Listener {
    let port: Int
    private let fd: Int32

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 4) == 0 else { throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func stop() { close(fd) }
}
