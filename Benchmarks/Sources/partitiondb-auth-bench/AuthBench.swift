import Auth
import Foundation
import PartitionDB
import Residency

/// Issue 14's rows (Benchmarks/README.md, "Auth"): access-token verifications per second on one
/// core, each run beside `openssl speed` of the same algorithm on this machine (the physical
/// limit: one signature verification per token); sign-up and login latency with the default
/// Argon2id parameters; and what the bounded hashing pool does with a flood of logins.
///
///   partitiondb-auth-bench [--runs N] [--seconds S] [--output FILE]
@main
struct AuthBench {
    static func main() async throws {
        var runs = 3
        var seconds = 3.0
        var output: String?
        var arguments = CommandLine.arguments.dropFirst()
        while let argument = arguments.popFirst() {
            switch argument {
            case "--runs": runs = Int(arguments.popFirst() ?? "") ?? runs
            case "--seconds": seconds = Double(arguments.popFirst() ?? "") ?? seconds
            case "--output": output = arguments.popFirst()
            default:
                FileHandle.standardError.write(
                    Data("usage: partitiondb-auth-bench [--runs N] [--seconds S] [--output FILE]\n".utf8))
                exit(2)
            }
        }
        let directory = FileManager.default.temporaryDirectory.path + "/pdb-auth-bench-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let database = try Database.create(at: directory, region: try Region("eu"))
        let homes = try ResidencyDirectory(database: database)
        _ = try database.createPartition("users")
        let subject = try SubjectID(String(repeating: "a", count: 64))
        _ = try homes.assignHome(subject, to: database.region)

        var rows: [String: [Double]] = [:]
        for algorithm in SigningAlgorithm.allCases {
            let settings = TokenSettings(
                issuerBase: "https://auth.example.com", audience: "pdb-api", algorithm: algorithm)
            let partition = "keys-\(algorithm.rawValue.lowercased())"
            _ = try database.createPartition(partition)
            let publisher = DirectoryKeyPublisher(database: database)
            let keys = RegionKeys(
                database: database, partition: partition, homes: homes, publisher: publisher, settings: settings)
            let token = try await TokenIssuer(keys: keys).accessToken(for: subject).token
            let verifier = TokenVerifier(settings: settings, directory: homes)
            try await verifier.setKeys(try await publisher.publishedKeys().filter { $0.algorithm == algorithm })
            for _ in 0..<runs {
                let ours = try verificationsPerSecond(verifier, token, seconds: seconds)
                let theirs = try openSSLVerifiesPerSecond(algorithm, seconds: seconds)
                rows["\(algorithm.rawValue) pdb", default: []].append(ours)
                rows["\(algorithm.rawValue) openssl", default: []].append(theirs)
                rows["\(algorithm.rawValue) ratio", default: []].append(ours / theirs)
                print(
                    String(
                        format: "%@: %.0f verifications/s, openssl %.0f/s, ratio %.3f", algorithm.rawValue, ours,
                        theirs, ours / theirs))
            }
        }

        // Sign-up and login with OWASP's parameters.
        let hasher = try PasswordHasher()
        let authenticator = Authenticator(
            region: database.region, subjects: try SubjectKey(bytes: Array(repeating: 1, count: 32)), hasher: hasher,
            homes: homes, users: try PartitionUserStore(database: database),
            preSignUp: CountryPolicySignUpHook(
                policy: try CountryRegionPolicy(defaultRegion: database.region, regions: [:])),
            preAuthentication: DirectoryPreAuthenticationHook(directory: homes, region: database.region))
        var signUps: [Double] = []
        var logins: [Double] = []
        for index in 0..<(runs * 10) {
            let login = "user\(index)@example.com"
            let started = DispatchTime.now().uptimeNanoseconds
            _ = try await authenticator.signUp(login: login, password: "a good password", country: "DE")
            let signedUp = DispatchTime.now().uptimeNanoseconds
            _ = try await authenticator.login(login: login, password: "a good password")
            let loggedIn = DispatchTime.now().uptimeNanoseconds
            signUps.append(Double(signedUp - started) / 1e6)
            logins.append(Double(loggedIn - signedUp) / 1e6)
        }
        rows["sign-up ms"] = signUps
        rows["login ms"] = logins

        // A flood: 300 logins at once against a pool of 2 with a queue of 256.
        let flood = try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<300 {
                group.addTask {
                    do {
                        _ = try await authenticator.login(
                            login: "user\(index % 10)@example.com", password: "a good password")
                        return "ok"
                    } catch AuthError.busy {
                        return "busy"
                    }
                }
            }
            var outcomes: [String] = []
            for try await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        let load = hasher.load
        await hasher.shutdown()

        func median(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            return sorted.count % 2 == 1
                ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        var summary: [String: Any] = [:]
        for (name, values) in rows.sorted(by: { $0.key < $1.key }) {
            summary[name] = ["median": median(values), "runs": values]
            print(
                String(
                    format: "%-16@ median %.3f  (%@)", name, median(values),
                    values.map { String(format: "%.3f", $0) }.joined(separator: ", ")))
        }
        summary["flood"] = [
            "logins": 300, "concurrency": hasher.concurrency, "max_queued": hasher.maxQueued,
            "peak_running": load.peakRunning, "peak_waiting": load.peakWaiting, "refused_busy": load.refused,
            "completed_ok": flood.filter { $0 == "ok" }.count,
        ]
        print(
            "flood of 300 logins: peak running \(load.peakRunning), peak waiting \(load.peakWaiting), refused busy \(load.refused)"
        )
        summary["machine"] = [
            "cores": ProcessInfo.processInfo.activeProcessorCount, "date": ISO8601DateFormatter().string(from: Date()),
            "openssl": run("/usr/bin/openssl", ["version"]).trimmingCharacters(in: .whitespacesAndNewlines),
            "seconds_per_row": seconds, "runs": runs,
        ]
        if let output {
            let data = try JSONSerialization.data(withJSONObject: summary, options: [.prettyPrinted, .sortedKeys])
            try data.write(to: URL(fileURLWithPath: output))
        }
        try database.close()
    }

    /// Full verifications (header, kid, signature, every claim, the directory's home) of one
    /// token on this thread for `seconds`.
    static func verificationsPerSecond(_ verifier: TokenVerifier, _ token: String, seconds: Double) throws -> Double {
        let started = DispatchTime.now().uptimeNanoseconds
        let deadline = started + UInt64(seconds * 1e9)
        var count = 0
        var now = started
        while now < deadline {
            for _ in 0..<100 { _ = try verifier.verify(token) }
            count += 100
            now = DispatchTime.now().uptimeNanoseconds
        }
        return Double(count) / (Double(now - started) / 1e9)
    }

    /// `openssl speed`'s verify/s of the same algorithm, one process.
    static func openSSLVerifiesPerSecond(_ algorithm: SigningAlgorithm, seconds: Double) throws -> Double {
        let name = algorithm == .es256 ? "ecdsap256" : "ed25519"
        // `openssl speed -seconds` ends each test with SIGALRM, which this process's threads
        // block and a child inherits blocked: Python's exec starts it with an empty signal mask.
        let text = run(
            "/usr/bin/env",
            [
                "python3", "-c",
                "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execvp('openssl', sys.argv[1:])",
                "openssl", "speed", "-seconds", String(Int(seconds.rounded(.up))), name,
            ])
        let marker = algorithm == .es256 ? "nistp256" : "Ed25519"
        guard let line = text.split(separator: "\n").last(where: { $0.contains(marker) }),
            let value = line.split(separator: " ").last.flatMap({ Double($0) })
        else { throw NSError(domain: "openssl speed gave no \(marker) line: \(text)", code: 1) }
        return value
    }

    static func run(_ executable: String, _ arguments: [String]) -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return "" }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
