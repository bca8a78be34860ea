import Foundation
import PartitionDB
import Residency
import XCTest

@testable import Auth

/// One host's database, directory and user store in a temporary directory.
struct TestSite {
    let path: String
    let database: Database
    let directory: HomeRegionResolver & HomeAssigning
    let users: PartitionUserStore

    /// A host of `region` with its own directory, or one that uses `sharedDirectory` (another
    /// site's) as its resolver, as a replica host's copy would answer.
    init(_ test: XCTestCase, region: Region, sharedDirectory: (HomeRegionResolver & HomeAssigning)? = nil) throws {
        path = try temporaryDirectory(test, "\(test.name)-\(region)")
        database = try Database.create(at: path, region: region)
        if let sharedDirectory {
            database.setResolver(sharedDirectory)
            directory = sharedDirectory
        } else {
            directory = try ResidencyDirectory(database: database)
        }
        _ = try database.createPartition("users")
        users = try PartitionUserStore(database: database)
    }

    /// The last LSNs of the global and the users partition: what a "writes nothing" compares.
    func positions() throws -> [LSN] {
        [try database.globalPartition().lastLSN, try database.partition("users").lastLSN]
    }
}

final class AuthenticatorTests: XCTestCase {
    let policy = try! CountryRegionPolicy(
        defaultRegion: us, regions: [eu: [CountryCode("DE")!, CountryCode("FR")!], us: [CountryCode("US")!]])
    let clock = ManualClock()

    func authenticator(_ site: TestSite, hasher: PasswordHasher) -> Authenticator {
        let clock = clock
        return Authenticator(
            region: site.database.region, subjects: testKey, hasher: hasher, homes: site.directory, users: site.users,
            preSignUp: CountryPolicySignUpHook(policy: policy),
            preAuthentication: DirectoryPreAuthenticationHook(directory: site.directory, region: site.database.region),
            now: { clock.now })
    }

    func testSignUpKeepsTheUserInTheHomeRegionOnly() async throws {
        let site = try TestSite(self, region: eu)
        let hasher = try PasswordHasher(parameters: cheapParameters)
        let auth = authenticator(site, hasher: hasher)
        let outcome = try await auth.signUp(login: " Ana@Example.com", password: "a secret of hers", country: "de")
        let subject = try auth.subject(of: "Ana@example.com")
        XCTAssertEqual(outcome, .registered(subject: subject, region: eu))
        XCTAssertEqual(try site.directory.homeRegion(of: subject), eu)
        let record = try await site.users.user(subject)
        XCTAssertEqual(record?.login, "Ana@example.com")
        XCTAssertEqual(record?.status, .active)
        XCTAssertEqual(try PasswordHash(phc: record?.passwordHash ?? "").parameters, cheapParameters)
        try site.database.partition("users").read { tx in
            XCTAssertEqual(
                try tx.keys(ownedBy: subject).map(\.table), [PartitionUserStore.table], "owned by the subject")
        }
        // The login is in the users partition's files only; the password nowhere.
        let holding = try filesContaining("Ana@example.com", under: site.path)
        XCTAssertFalse(holding.isEmpty)
        XCTAssertEqual(holding.filter { !$0.hasPrefix("users") }, [], "the directory holds no login")
        XCTAssertEqual(try filesContaining("a secret of hers", under: site.path), [])
        await hasher.shutdown()
    }

    func testASignUpOfAnotherRegionRedirectsAndWritesNothing() async throws {
        let site = try TestSite(self, region: eu)
        let hasher = try PasswordHasher(parameters: cheapParameters)
        let auth = authenticator(site, hasher: hasher)
        let before = try site.positions()
        let outcome = try await auth.signUp(login: "bo@example.com", password: "password!", country: "US")
        XCTAssertEqual(outcome, .redirect(region: us))
        let noCountryRule = try await auth.signUp(login: "cy@example.com", password: "password!", country: "BR")
        XCTAssertEqual(noCountryRule, .redirect(region: us), "the policy's default")
        XCTAssertEqual(try site.positions(), before, "no commit in any partition")
        XCTAssertEqual(try filesContaining("example.com", under: site.path), [])
        XCTAssertNil(try site.directory.homeRegion(of: try auth.subject(of: "bo@example.com")))
        XCTAssertEqual(hasher.load.completed, 0, "not even hashed")
        await hasher.shutdown()
    }

    func testSigningUpALoginThatExistsAnswersAsSuccessAndWritesNothing() async throws {
        let site = try TestSite(self, region: eu)
        let hasher = try PasswordHasher(parameters: cheapParameters)
        let auth = authenticator(site, hasher: hasher)
        let first = try await auth.signUp(login: "ana@example.com", password: "first password", country: "DE")
        let before = try site.positions()
        let again = try await auth.signUp(login: "ana@EXAMPLE.com", password: "second password", country: "FR")
        XCTAssertEqual(again, first)
        XCTAssertEqual(try site.positions(), before)
        XCTAssertEqual(hasher.load.completed, 2, "the second sign-up hashed too, so it takes as long")
        let firstLogin = try await auth.login(login: "ana@example.com", password: "first password")
        XCTAssertEqual(firstLogin, .authenticated(subject: try auth.subject(of: "ana@example.com"), region: eu))
        await assertThrows(AuthError.invalidCredentials) {
            try await auth.login(login: "ana@example.com", password: "second password")
        }

        // A login whose home is another region: answered as a new sign-up here, nothing written.
        let bob = try auth.subject(of: "bob@example.com")
        _ = try await site.directory.assignHome(bob, to: us)
        let beforeBob = try site.positions()
        let bobOutcome = try await auth.signUp(login: "bob@example.com", password: "bob's password", country: "DE")
        XCTAssertEqual(bobOutcome, .registered(subject: bob, region: eu))
        XCTAssertEqual(try site.positions(), beforeBob)
        XCTAssertEqual(try site.directory.homeRegion(of: bob), us)
        let bobRecord = try await site.users.user(bob)
        XCTAssertNil(bobRecord)
        await hasher.shutdown()
    }

    func testLoginAnswers() async throws {
        let site = try TestSite(self, region: eu)
        let hasher = try PasswordHasher(parameters: cheapParameters)
        let auth = authenticator(site, hasher: hasher)
        _ = try await auth.signUp(login: "ana@example.com", password: "her password", country: "DE")
        let ana = try auth.subject(of: "ana@example.com")
        let good = try await auth.login(login: "  ana@Example.COM", password: "her password")
        XCTAssertEqual(good, .authenticated(subject: ana, region: eu))
        await assertThrows(AuthError.invalidCredentials) {
            try await auth.login(login: "ana@example.com", password: "not her password")
        }
        await assertThrows(AuthError.invalidCredentials) {
            try await auth.login(login: "nobody@example.com", password: "her password")
        }
        await assertThrows(AuthError.invalidPassword(reason: "it has 3 bytes; it needs at least 8")) {
            try await auth.login(login: "ana@example.com", password: "her")
        }
        // A user of another region is sent there; no password is checked here.
        let bob = try auth.subject(of: "bob@example.com")
        _ = try await site.directory.assignHome(bob, to: us)
        let checked = hasher.load.completed
        let redirect = try await auth.login(login: "bob@example.com", password: "whatever it is")
        XCTAssertEqual(redirect, .redirect(region: us))
        XCTAssertEqual(hasher.load.completed, checked)
        await hasher.shutdown()
    }

    func testFailedLoginsLockOutWithDoublingBackOffAndALockoutCostsAHash() async throws {
        XCTAssertEqual(
            (1...16).map { AttemptLimits.cognito.lockout(afterFailures: $0) },
            [0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900])
        let site = try TestSite(self, region: eu)
        let hasher = try PasswordHasher(parameters: cheapParameters)
        let auth = authenticator(site, hasher: hasher)
        _ = try await auth.signUp(login: "ana@example.com", password: "her password", country: "DE")
        let ana = try auth.subject(of: "ana@example.com")
        for _ in 1...5 {
            await assertThrows(AuthError.invalidCredentials) {
                try await auth.login(login: "ana@example.com", password: "a wrong guess")
            }
        }
        var record = try await site.users.user(ana)
        XCTAssertEqual(record?.failedAttempts, 5)
        let hashed = hasher.load.completed
        await assertThrows(AuthError.tooManyAttempts(retryAfterSeconds: 1)) {
            try await auth.login(login: "ana@example.com", password: "her password")
        }
        XCTAssertEqual(hasher.load.completed, hashed + 1, "a locked-out login spends a hash as a wrong password does")
        clock.advance(1)
        await assertThrows(AuthError.invalidCredentials) {
            try await auth.login(login: "ana@example.com", password: "a wrong guess")
        }
        await assertThrows(AuthError.tooManyAttempts(retryAfterSeconds: 2)) {
            try await auth.login(login: "ana@example.com", password: "her password")
        }
        clock.advance(2)
        let good = try await auth.login(login: "ana@example.com", password: "her password")
        XCTAssertEqual(good, .authenticated(subject: ana, region: eu))
        record = try await site.users.user(ana)
        XCTAssertEqual(record?.failedAttempts, 0, "a success resets the count")
        XCTAssertEqual(record?.lockedUntilMilliseconds, 0)
        await hasher.shutdown()
    }

    func testUnknownLoginsLockOutExactlyAsRealOnes() async throws {
        let site = try TestSite(self, region: eu)
        let hasher = try PasswordHasher(parameters: cheapParameters)
        let auth = authenticator(site, hasher: hasher)
        _ = try await auth.signUp(login: "ana@example.com", password: "her password", country: "DE")
        func answers(_ login: String) async -> [String] {
            var answers: [String] = []
            for _ in 1...7 {
                do {
                    _ = try await auth.login(login: login, password: "a wrong guess")
                    answers.append("ok")
                } catch {
                    answers.append("\(error)")
                }
            }
            return answers
        }
        let real = await answers("ana@example.com")
        let unknown = await answers("nobody@example.com")
        XCTAssertEqual(real, unknown)
        XCTAssertEqual(real.last, AuthError.tooManyAttempts(retryAfterSeconds: 1).description)
        await hasher.shutdown()
    }

    func testFailuresFromOneAddressLockThatAddressOut() async throws {
        let site = try TestSite(self, region: eu)
        let hasher = try PasswordHasher(parameters: cheapParameters)
        let auth = authenticator(site, hasher: hasher)
        _ = try await auth.signUp(login: "ana@example.com", password: "her password", country: "DE")
        for index in 1...5 {
            await assertThrows(AuthError.invalidCredentials) {
                try await auth.login(
                    login: "guess\(index)@example.com", password: "password", clientAddress: "192.0.2.7")
            }
        }
        await assertThrows(AuthError.tooManyAttempts(retryAfterSeconds: 1)) {
            try await auth.login(login: "ana@example.com", password: "her password", clientAddress: "192.0.2.7")
        }
        let elsewhere = try await auth.login(
            login: "ana@example.com", password: "her password", clientAddress: "198.51.100.1")
        XCTAssertEqual(elsewhere, .authenticated(subject: try auth.subject(of: "ana@example.com"), region: eu))
        clock.advance(1)
        let later = try await auth.login(login: "ana@example.com", password: "her password", clientAddress: "192.0.2.7")
        XCTAssertEqual(later, elsewhere)
        await hasher.shutdown()
    }

    func testALoginRehashesWhenTheParametersChangedAndADisabledUserIsRefused() async throws {
        let site = try TestSite(self, region: eu)
        let old = try PasswordHasher(parameters: cheapParameters)
        _ = try await authenticator(site, hasher: old).signUp(
            login: "ana@example.com", password: "her password", country: "DE")
        let stronger = PasswordParameters(memoryKiB: 512, iterations: 2, parallelism: 1)
        let new = try PasswordHasher(parameters: stronger)
        let auth = authenticator(site, hasher: new)
        let ana = try auth.subject(of: "ana@example.com")
        _ = try await auth.login(login: "ana@example.com", password: "her password")
        var record = try await site.users.user(ana)
        XCTAssertEqual(try PasswordHash(phc: record!.passwordHash).parameters, stronger)
        _ = try await auth.login(login: "ana@example.com", password: "her password")

        var disabled = record!
        disabled.status = .disabled
        let replaced = try await site.users.replace(ana, expected: record!, with: disabled)
        XCTAssertTrue(replaced)
        await assertThrows(AuthError.accountDisabled) {
            try await auth.login(login: "ana@example.com", password: "her password")
        }
        await assertThrows(AuthError.invalidCredentials) {
            try await auth.login(login: "ana@example.com", password: "not her password")
        }
        record = try await site.users.user(ana)
        XCTAssertEqual(record?.failedAttempts, 1)
        await old.shutdown()
        await new.shutdown()
    }

    func testADamagedUserRecordIsATypedError() async throws {
        let site = try TestSite(self, region: eu)
        let hasher = try PasswordHasher(parameters: cheapParameters)
        let auth = authenticator(site, hasher: hasher)
        let ana = try auth.subject(of: "ana@example.com")
        _ = try await site.directory.assignHome(ana, to: eu)
        try site.database.partition("users").write { tx in
            _ = try tx.createTable(PartitionUserStore.table)
            try tx.put(PartitionUserStore.table, Array(ana.rawValue.utf8), Array("{\"v\":1,\"lo".utf8), owner: ana)
        }
        await assertThrows(AuthError.badUserRecord(subject: ana.rawValue, reason: "it is not the record's JSON")) {
            try await auth.login(login: "ana@example.com", password: "her password")
        }
        XCTAssertThrowsError(try PartitionUserStore(database: site.database, partition: "global"))
        await hasher.shutdown()
    }

    /// Guarantee 3 through the auth layer: the same logins signed up at the same moment through
    /// a host in eu and one in us, each with its own country, end with one home each, the user
    /// stored only in the winner's region, and none of the loser's personal data anywhere.
    func testConcurrentSignUpsThroughTwoRegionsHaveOneWinnerAndTheLoserKeepsNothing() async throws {
        let usSite = try TestSite(self, region: us)
        let euSite = try TestSite(self, region: eu, sharedDirectory: usSite.directory)
        let hasher = try PasswordHasher(parameters: cheapParameters, concurrency: 2, maxQueued: 1000)
        let euAuth = authenticator(euSite, hasher: hasher)
        let usAuth = authenticator(usSite, hasher: hasher)
        let logins = (0..<40).map { "racer\($0)@example.org" }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for login in logins {
                group.addTask {
                    let outcome = try await euAuth.signUp(login: login, password: "eu password", country: "DE")
                    XCTAssertEqual(outcome, .registered(subject: try euAuth.subject(of: login), region: eu))
                }
                group.addTask {
                    let outcome = try await usAuth.signUp(login: login, password: "us password", country: "US")
                    XCTAssertEqual(outcome, .registered(subject: try usAuth.subject(of: login), region: us))
                }
            }
            try await group.waitForAll()
        }
        var winners: [Region: Int] = [:]
        for login in logins {
            let subject = try euAuth.subject(of: login)
            let home = try XCTUnwrap(try usSite.directory.homeRegion(of: subject))
            winners[home, default: 0] += 1
            let (winner, loser) = home == eu ? (euSite, usSite) : (usSite, euSite)
            let stored = try await winner.users.user(subject)
            XCTAssertEqual(stored?.login, login)
            let strayed = try await loser.users.user(subject)
            XCTAssertNil(strayed)
            XCTAssertEqual(
                try filesContaining(login, under: loser.path).filter { !$0.hasPrefix("global") }, [],
                "the loser keeps nothing of \(login)")
            let winnerPassword = home == eu ? "eu password" : "us password"
            let atLoser = try await (home == eu ? usAuth : euAuth).login(login: login, password: winnerPassword)
            XCTAssertEqual(atLoser, .redirect(region: home))
            let atWinner = try await (home == eu ? euAuth : usAuth).login(login: login, password: winnerPassword)
            XCTAssertEqual(atWinner, .authenticated(subject: subject, region: home))
        }
        XCTAssertEqual(winners.values.reduce(0, +), logins.count)
        await hasher.shutdown()
    }
}

/// Asserts that `body` throws `expected`.
func assertThrows<T>(
    _ expected: AuthError, file: StaticString = #filePath, line: UInt = #line, _ body: () async throws -> T
) async {
    do {
        _ = try await body()
        XCTFail("no error; expected \(expected)", file: file, line: line)
    } catch {
        XCTAssertEqual(error as? AuthError, expected, file: file, line: line)
    }
}
