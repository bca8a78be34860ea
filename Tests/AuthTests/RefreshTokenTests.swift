import Foundation
import PartitionDB
import Residency
import XCTest

@testable import Auth

final class RefreshTokenTests: XCTestCase {
    let clock = ManualClock()

    struct Setup {
        let site: TestSite
        let authenticator: Authenticator
        let sessions: Sessions
        let refreshTokens: RefreshTokens
        let verifier: TokenVerifier
        let hasher: PasswordHasher
    }

    func makeSetup() async throws -> Setup {
        let clock = clock
        let site = try TestSite(self, region: eu)
        let hasher = try PasswordHasher(parameters: cheapParameters)
        let policy = try CountryRegionPolicyFixture.euOnly()
        let authenticator = Authenticator(
            region: eu, subjects: testKey, hasher: hasher, homes: site.directory, users: site.users,
            preSignUp: CountryPolicySignUpHook(policy: policy),
            preAuthentication: DirectoryPreAuthenticationHook(directory: site.directory, region: eu),
            now: { clock.now })
        let settings = TokenSettings(issuerBase: "https://auth.example.com", audience: "pdb-api")
        let publisher = DirectoryKeyPublisher(database: site.database)
        let keys = RegionKeys(
            database: site.database, homes: site.directory, publisher: publisher, settings: settings,
            now: { clock.now })
        let refreshTokens = RefreshTokens(database: site.database, now: { clock.now })
        let sessions = Sessions(
            issuer: TokenIssuer(keys: keys, now: { clock.now }), refreshTokens: refreshTokens, users: site.users)
        let verifier = TokenVerifier(settings: settings, directory: site.directory, now: { clock.now })
        _ = try await keys.signingKey()
        try await verifier.setKeys(publisher.publishedKeys())
        return Setup(
            site: site, authenticator: authenticator, sessions: sessions, refreshTokens: refreshTokens,
            verifier: verifier, hasher: hasher)
    }

    func login(_ setup: Setup) async throws -> Session {
        _ = try await setup.authenticator.signUp(login: "ana@example.com", password: "her password", country: "DE")
        guard
            case .authenticated(let subject, _) = try await setup.authenticator.login(
                login: "ana@example.com", password: "her password")
        else { throw AuthError.invalidCredentials }
        return try await setup.sessions.start(for: subject)
    }

    func testARefreshSpendsTheTokenAndGivesANewPair() async throws {
        let setup = try await makeSetup()
        let first = try await login(setup)
        XCTAssertEqual(first.tokenType, "Bearer")
        XCTAssertEqual(first.expiresIn, 900)
        XCTAssertGreaterThanOrEqual(Base64URL.decode(first.refreshToken)?.count ?? 0, 32, "at least 256 bits")
        XCTAssertEqual(try setup.verifier.verify(first.accessToken).subject, first.subject)
        let second = try await setup.sessions.refresh(first.refreshToken)
        XCTAssertNotEqual(second.refreshToken, first.refreshToken)
        XCTAssertEqual(try setup.verifier.verify(second.accessToken).subject, first.subject)
        let third = try await setup.sessions.refresh(second.refreshToken)
        XCTAssertEqual(third.subject, first.subject)
        // Only hashes are stored: no file holds a refresh token.
        for token in [first.refreshToken, second.refreshToken, third.refreshToken] {
            XCTAssertEqual(try filesContaining(token, under: setup.site.path), [])
        }
        await setup.hasher.shutdown()
    }

    func testReusingASpentTokenRevokesTheWholeFamily() async throws {
        let setup = try await makeSetup()
        let first = try await login(setup)
        let other = try await setup.sessions.start(for: first.subject)
        let second = try await setup.sessions.refresh(first.refreshToken)
        await assertThrows(AuthError.refreshTokenReused) { try await setup.sessions.refresh(first.refreshToken) }
        // The thief's reuse killed the honest successor too; another login's family lives.
        await assertThrows(AuthError.invalidRefreshToken) { try await setup.sessions.refresh(second.refreshToken) }
        let unaffected = try await setup.sessions.refresh(other.refreshToken)
        XCTAssertEqual(unaffected.subject, first.subject)
        await setup.hasher.shutdown()
    }

    func testLogoutRevokesTheFamilyAndBadTokensAreRefused() async throws {
        let setup = try await makeSetup()
        let first = try await login(setup)
        let second = try await setup.sessions.refresh(first.refreshToken)
        try await setup.sessions.end(second.refreshToken)
        await assertThrows(AuthError.invalidRefreshToken) { try await setup.sessions.refresh(second.refreshToken) }
        for bad in ["", "not-a-token", String(repeating: "A", count: 43), String(repeating: "x", count: 5000)] {
            await assertThrows(AuthError.invalidRefreshToken) { try await setup.sessions.refresh(bad) }
        }
        await assertThrows(AuthError.invalidRefreshToken) { try await setup.sessions.end("not-a-token") }
        await setup.hasher.shutdown()
    }

    func testRefreshTokensExpireAndADisabledUserCannotRefresh() async throws {
        let setup = try await makeSetup()
        let first = try await login(setup)
        clock.advance(30 * 24 * 3600 + 1)
        await assertThrows(AuthError.invalidRefreshToken) { try await setup.sessions.refresh(first.refreshToken) }

        let fresh = try await setup.sessions.start(for: first.subject)
        let record = try await setup.site.users.user(first.subject)
        var disabled = record!
        disabled.status = .disabled
        _ = try await setup.site.users.replace(first.subject, expected: record!, with: disabled)
        await assertThrows(AuthError.invalidRefreshToken) { try await setup.sessions.refresh(fresh.refreshToken) }
        await setup.hasher.shutdown()
    }
}

enum CountryRegionPolicyFixture {
    static func euOnly() throws -> CountryRegionPolicy {
        try CountryRegionPolicy(defaultRegion: eu, regions: [:])
    }
}
