import Auth
import Foundation
import Logging
import PartitionDB
import Residency
import XCTest

/// The auth layer on cluster hosts (spec/auth.md#users, spec/replication.md#write-forwarding):
/// `eu-1` is a real `pdb serve` (the directory's primary and the primary of eu's `users`);
/// `eu-2` (a replica of both) and `us-1` (us's primary, a directory replica) run in this
/// process as an application embedding PartitionDB runs them. Every write of the auth layer on
/// `eu-2` is a conditional write made on `eu-1`, read back on `eu-2` at once; sign-ups of one
/// login through both regions at once have one winner, whose region alone holds the user.
final class AuthThroughHostsTests: PDBTestCase {
    private struct NoCommands: CommandRunning {
        func run(arguments: [String], input: [UInt8], host: ClusterHost) async -> CommandResult {
            CommandResult(stdout: [], stderr: [], status: 1)
        }
    }

    /// A host of the cluster run in this process, with the auth layer its configuration sets up
    /// (`AuthService`: the subject key, policy and settings `pdb cluster init` wrote).
    private struct Site {
        let host: ClusterHost
        let database: Database
        let running: Task<Void, Never>
        let auth: AuthService
        var users: PartitionUserStore { auth.users }
        var authenticator: Authenticator { auth.authenticator }
        var sessions: Sessions { auth.sessions }
        var keys: RegionKeys { auth.keys }

        /// Starts the host, and once its copy of `users` is there (a replica receives it from
        /// the primary) builds the auth layer on it.
        init(config: String) async throws {
            let configuration = try HostConfiguration.load(config)
            database = try Database.openAsCreated(at: configuration.dataDirectory)
            var logger = Logger(label: "test.\(configuration.host)")
            logger.logLevel = .error
            let host = try ClusterHost(
                configuration: configuration, database: database, commands: NoCommands(), logger: logger)
            self.host = host
            running = Task { try? await host.run(onListening: { _ in }) }
            let deadline = Date().addingTimeInterval(60)
            while try !database.partitionNames().contains("users"), Date() < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            auth = try AuthService(host: host)
        }

        func stop() async throws {
            host.stop()
            _ = await running.value
            await host.shutdown()
            await auth.shutdown()
            try database.close()
        }
    }

    func testAuthWritesOnAReplicaHostAreMadeOnThePrimaryAndSignUpRacesHaveOneWinner() async throws {
        let cluster = root.appendingPathComponent("cluster").path
        let basePort = 20_000 + Int.random(in: 0..<400) * 100 + 70
        assertExit(try pdb("cluster", "init", cluster, "--regions", "eu:2,us:1", "--base-port", "\(basePort)"), 0)
        let euPrimary = try HostConfiguration.load(cluster + "/hosts/eu-1/config.json")
        // The region's signing key is made on the primary's directory before it starts
        // (`pdb keys` runs on a stopped host), so eu-2 receives it with its copy.
        assertExit(try pdb("keys", "rotate", euPrimary.dataDirectory), 0)
        let primary = try Self.startServe(config: cluster + "/hosts/eu-1/config.json")
        var primaryRuns = true
        defer {
            if primaryRuns {
                kill(primary.processIdentifier, SIGKILL)
                primary.waitUntilExit()
            }
        }
        let eu2 = try await Site(config: cluster + "/hosts/eu-2/config.json")
        let us1 = try await Site(config: cluster + "/hosts/us-1/config.json")
        // eu-2 signs with the key it received from eu-1, never one of its own.
        let keysArrive = Date().addingTimeInterval(60)
        while try await eu2.keys.list().isEmpty, Date() < keysArrive { try await Task.sleep(for: .milliseconds(50)) }
        let received = try await eu2.keys.list()
        XCTAssertEqual(received.count, 1)

        // Sign-up through the replica host; the primary may still be starting, and a sign-up
        // that cannot reach it writes nothing, so it is tried again.
        var signedUp: SignUpOutcome? = nil
        for _ in 0..<300 where signedUp == nil {
            signedUp = try? await eu2.authenticator.signUp(
                login: "ana@example.com", password: "her long password", country: "DE")
            if signedUp == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        let ana = try eu2.authenticator.subject(of: "ana@example.com")
        XCTAssertEqual(signedUp, .registered(subject: ana, region: try Region("eu")))
        let record = try await eu2.users.user(ana)
        XCTAssertEqual(record?.login, "ana@example.com", "the replica host reads the user it just signed up")
        let operatorTLS = cluster + "/operator"
        let primaryAddress = "pdb://\(euPrimary.listen)"
        let onPrimary = try pdb(
            "get", primaryAddress, "users", PartitionUserStore.table, ana.rawValue, "--tls", operatorTLS, "--json")
        assertExit(onPrimary, 0)
        XCTAssertTrue(onPrimary.stdout.contains("ana@example.com"), "the record was written on the primary")

        // A wrong password counts a failure in the record, on the primary, read back here.
        do {
            _ = try await eu2.authenticator.login(login: "ana@example.com", password: "not her password")
            XCTFail("a wrong password logged in")
        } catch AuthError.invalidCredentials {}
        let failedOnce = try await eu2.users.user(ana)
        XCTAssertEqual(failedOnce?.failedAttempts, 1)
        let login = try await eu2.authenticator.login(login: "ana@example.com", password: "her long password")
        XCTAssertEqual(login, .authenticated(subject: ana, region: try Region("eu")))
        let reset = try await eu2.users.user(ana)
        XCTAssertEqual(reset?.failedAttempts, 0)

        // Sessions: refresh tokens are spent and revoked on the primary; the key was eu-1's.
        let session = try await eu2.sessions.start(for: ana)
        let refreshed = try await eu2.sessions.refresh(session.refreshToken)
        do {
            _ = try await eu2.sessions.refresh(session.refreshToken)
            XCTFail("a spent refresh token was accepted")
        } catch AuthError.refreshTokenReused {}
        do {
            _ = try await eu2.sessions.refresh(refreshed.refreshToken)
            XCTFail("the family of a reused token was not revoked")
        } catch AuthError.invalidRefreshToken {}

        // us-1 verifies eu's token offline, from its copy of the directory.
        let deadline = Date().addingTimeInterval(30)
        var verified: VerifiedAccess? = nil
        while verified == nil, Date() < deadline {
            try await us1.auth.reloadKeys()
            verified = try? us1.auth.verifier.verify(refreshed.accessToken)
            if verified == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        XCTAssertEqual(verified?.subject, ana)
        XCTAssertEqual(verified?.region, try Region("eu"))

        // The same logins signed up at once through eu-2 (as a person in Germany) and us-1 (in
        // the United States): one home each, the same on every copy, the user in it alone.
        let logins = (0..<12).map { "racer\($0)@example.com" }
        async let throughEU: [Bool] = Self.signUpAll(logins, eu2.authenticator, country: "DE")
        async let throughUS: [Bool] = Self.signUpAll(logins, us1.authenticator, country: "US")
        let (euAnswered, usAnswered) = await (throughEU, throughUS)
        XCTAssertEqual(euAnswered, Array(repeating: true, count: logins.count), "every sign-up is answered")
        XCTAssertEqual(usAnswered, Array(repeating: true, count: logins.count), "every sign-up is answered")
        let euDirectory = try ResidencyDirectory(database: eu2.database)
        let usDirectory = try ResidencyDirectory(database: us1.database)
        var winners: [String: String] = [:]
        for login in logins {
            let subject = try eu2.authenticator.subject(of: login)
            var homes: (String?, String?) = (nil, nil)
            let until = Date().addingTimeInterval(30)
            repeat {
                homes = (try euDirectory.home(of: subject)?.name, try usDirectory.home(of: subject)?.name)
                if homes.0 != nil, homes.0 == homes.1 { break }
                try await Task.sleep(for: .milliseconds(50))
            } while Date() < until
            XCTAssertNotNil(homes.0, login)
            XCTAssertEqual(homes.0, homes.1, "\(login): every copy has the same home")
            let home = homes.0 ?? "?"
            winners[login] = home
            let inEU = try await eu2.users.user(subject)
            let inUS = try await us1.users.user(subject)
            XCTAssertEqual(inEU != nil, home == "eu", "\(login): a user record in eu only if its home is eu")
            XCTAssertEqual(inUS != nil, home == "us", "\(login): a user record in us only if its home is us")
        }
        for (login, home) in winners {
            let elsewhere =
                home == "eu"
                ? [us1.host.configuration.dataDirectory]
                : [euPrimary.dataDirectory, eu2.host.configuration.dataDirectory]
            for directory in elsewhere {
                XCTAssertEqual(Self.files(under: directory, containing: login), [], "\(login) left its region")
            }
        }

        // Without the primary, a sign-up through the replica host fails and writes nothing.
        let before = (try eu2.database.partition("users").lastLSN, try eu2.database.globalPartition().lastLSN)
        kill(primary.processIdentifier, SIGKILL)
        primary.waitUntilExit()
        primaryRuns = false
        do {
            _ = try await eu2.authenticator.signUp(
                login: "late@example.com", password: "a long password", country: "DE")
            XCTFail("a sign-up succeeded without the directory's primary")
        } catch AuthError.residency {}
        XCTAssertEqual(
            before.0, try eu2.database.partition("users").lastLSN, "nothing written on the replica host")
        XCTAssertEqual(before.1, try eu2.database.globalPartition().lastLSN)
        XCTAssertEqual(Self.files(under: eu2.host.configuration.dataDirectory, containing: "late@example"), [])

        try await eu2.stop()
        try await us1.stop()
    }

    /// Signs each login up through `authenticator`; true for each that was answered.
    private static func signUpAll(_ logins: [String], _ authenticator: Authenticator, country: String) async -> [Bool] {
        var answered: [Bool] = []
        for login in logins {
            let outcome = try? await authenticator.signUp(
                login: login, password: "a racer's password", country: country)
            answered.append(outcome != nil)
        }
        return answered
    }
}
