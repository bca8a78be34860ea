import Foundation
import NIOPosix
import PartitionDB
import Residency
import XCTest

/// A cluster of real `pdb serve` processes on loopback ports, laid out by `pdb cluster init`,
/// talked to through `pdb … pdb://` over mutual TLS (spec/replication.md): the helpers the
/// cluster tests share.
class ClusterTestCase: PDBTestCase {
    var servers: [String: Process] = [:]
    var basePort = 0
    var cluster: String { root.appendingPathComponent("cluster").path }
    var operatorTLS: String { cluster + "/operator" }

    override func tearDownWithError() throws {
        for process in servers.values where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        // A failed test shows what its hosts logged, before the directory is removed.
        // (`hasSucceeded` is false until the run stops, so the failures are counted.)
        if (testRun?.totalFailureCount ?? 0) > 0,
            let names = try? FileManager.default.contentsOfDirectory(atPath: root.path)
        {
            for name in names.sorted() where name.hasSuffix(".log") {
                let text = (try? String(contentsOf: root.appendingPathComponent(name), encoding: .utf8)) ?? ""
                print("--- \(name) (last 60 lines)\n" + text.split(separator: "\n").suffix(60).joined(separator: "\n"))
            }
        }
        try super.tearDownWithError()
    }

    /// Lays out hosts eu-1, eu-2, us-1 on a port range of its own.
    func layOut(regions: String = "eu:2,us:1", _ options: String...) throws {
        basePort = 20_000 + Int.random(in: 0..<400) * 100
        let result = try run(
            ["cluster", "init", cluster, "--regions", regions, "--base-port", "\(basePort)", "--json"] + options)
        assertExit(result, 0)
        let hosts = try XCTUnwrap(try result.object()["hosts"] as? [[String: Any]])
        XCTAssertEqual(
            hosts.map { $0["host"] as? String },
            regions == "eu:2,us:1" ? ["eu-1", "eu-2", "us-1"] : hosts.map { $0["host"] as? String })
    }

    func address(_ host: String) throws -> String {
        let configuration = try HostConfiguration.load("\(cluster)/hosts/\(host)/config.json")
        return "pdb://\(configuration.listen)"
    }

    func start(_ host: String) throws {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = ["serve", "--config", "\(cluster)/hosts/\(host)/config.json"]
        let log = root.appendingPathComponent("\(host)-\(servers.count).log")
        XCTAssertTrue(FileManager.default.createFile(atPath: log.path, contents: nil), log.path)
        process.standardError = try FileHandle(forWritingTo: log)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        servers[host] = process
        // Ready when it answers an operator.
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if try remote("info", host).status == 0 { return }
            XCTAssertTrue(process.isRunning, "\(host) exited: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
            if !process.isRunning { return }
            usleep(100_000)
        }
        XCTFail("\(host) did not answer within 30 s")
    }

    func stop(_ host: String, signal: Int32 = SIGTERM) {
        guard let process = servers[host] else { return }
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    /// `pdb COMMAND pdb://HOST REST… --tls OPERATOR`.
    func remote(_ command: String, _ host: String, _ rest: String..., stdin: String = "") throws -> RunResult {
        let words = command.split(separator: " ").map(String.init)
        return try run(words + [try address(host)] + rest + ["--tls", operatorTLS], stdin: stdin, timeout: 60)
    }

    func checksum(_ host: String, _ partition: String) throws -> String? {
        let result = try remote("checksum", host, partition, "--json")
        guard result.status == 0 else { return nil }
        return result.stdout
    }

    /// Waits until `replica`'s copy of `partition` sums as the primary's.
    func assertConverges(_ partition: String, primary: String, replicas: [String], timeout: TimeInterval = 60)
        throws
    {
        let expected = try XCTUnwrap(try checksum(primary, partition))
        let deadline = Date().addingTimeInterval(timeout)
        for replica in replicas {
            var last: String?
            while Date() < deadline {
                last = try checksum(replica, partition)
                if last == expected { break }
                usleep(100_000)
            }
            XCTAssertEqual(last, expected, "\(replica)'s \(partition) never matched \(primary)'s")
        }
    }

    /// `users` in `pdb replication status --json` of `host`, and its first replica's figures.
    func usersStatus(on host: String) throws -> (partition: [String: Any], replica: [String: Any]) {
        let status = try remote("replication status", host, "--json")
        assertExit(status, 0)
        let partitions = try XCTUnwrap(try status.object()["partitions"] as? [[String: Any]])
        let users = try XCTUnwrap(partitions.first { $0["name"] as? String == "users" })
        return (users, try XCTUnwrap((users["replicas"] as? [[String: Any]])?.first))
    }

    /// eu-2 reaches eu-1 only through `proxy`, and closes a stream silent for 2 s.
    func routeToEU1(through proxy: FaultProxy) throws {
        try editConfig("eu-2") {
            var hosts = $0["hosts"] as! [String: Any]
            hosts["eu-1"] = ["region": "eu", "address": "127.0.0.1:\(proxy.port)"]
            $0["hosts"] = hosts
            $0["peer_timeout_seconds"] = 2
        }
    }

    /// Rewrites a host's config file through `edit` on its JSON object.
    func editConfig(_ host: String, _ edit: (inout [String: Any]) -> Void) throws {
        let file = "\(cluster)/hosts/\(host)/config.json"
        var object = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
        edit(&object)
        try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: file))
    }
}
