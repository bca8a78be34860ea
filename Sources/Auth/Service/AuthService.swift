import Foundation
import PartitionDB
import Residency

/// The auth layer of one running host, built from the `auth` section of its configuration
/// (spec/config.md#auth): sign-up and login, sessions, token verification and the region's
/// keys. Every write goes through the host, so it is made on the region's primary (and the
/// directory's, for homes and public keys) from any host of the region, and read back here.
public final class AuthService: Sendable {
    public let region: Region
    public let tokenSettings: TokenSettings
    public let hasher: PasswordHasher
    public let users: PartitionUserStore
    public let authenticator: Authenticator
    public let keys: RegionKeys
    public let refreshTokens: RefreshTokens
    public let sessions: Sessions
    public let verifier: TokenVerifier
    public let publisher: DirectoryKeyPublisher

    /// The auth layer of `host`. Throws a configuration error naming the key when the section
    /// is missing, the subject key file cannot be used, or the password parameters are not ones
    /// Argon2id takes; and what opening the users partition throws (a replica host has it once
    /// its first snapshot arrived).
    public init(host: ClusterHost) throws {
        let configuration = host.configuration
        func bad(_ key: String, _ reason: String) -> AuthError {
            .residency(.configuration(file: configuration.file, key: key, reason: reason))
        }
        guard let settings = configuration.auth else {
            throw bad("auth", "is missing; this host serves no sign-up or login (spec/config.md#auth)")
        }
        let subjects: SubjectKey
        do {
            subjects = try SubjectKey(file: configuration.resolve(settings.subjectKeyFile))
        } catch AuthError.badSecret(let reason) {
            throw bad("auth.subject_key_file", "cannot be used: \(reason)")
        }
        let parameters = PasswordParameters(
            memoryKiB: UInt32(settings.passwordMemoryKiB), iterations: UInt32(settings.passwordIterations),
            parallelism: UInt32(settings.passwordParallelism))
        do {
            try parameters.check()
        } catch AuthError.badPasswordHash(let reason) {
            throw bad("auth.password", "is not usable by Argon2id: \(reason)")
        }
        let database = host.database
        region = configuration.region
        tokenSettings = TokenSettings(
            issuerBase: settings.issuerBase, audience: settings.audience,
            accessLifetime: TimeInterval(settings.accessLifetimeSeconds))
        users = try PartitionUserStore(database: database, partition: settings.partition, commits: host)
        hasher = try PasswordHasher(
            parameters: parameters, concurrency: Int(settings.hashingConcurrency), maxQueued: Int(settings.hashingQueue)
        )
        let directory = try wrapping { try ResidencyDirectory(database: database) }
        authenticator = Authenticator(
            region: region, subjects: subjects, hasher: hasher, homes: host, users: users,
            preSignUp: CountryPolicySignUpHook(policy: settings.policy),
            preAuthentication: DirectoryPreAuthenticationHook(directory: directory, region: region))
        publisher = DirectoryKeyPublisher(database: database, host: host)
        keys = RegionKeys(
            database: database, partition: settings.partition, homes: host, publisher: publisher,
            settings: tokenSettings, commits: host)
        refreshTokens = RefreshTokens(
            database: database, partition: settings.partition,
            lifetime: TimeInterval(settings.refreshLifetimeSeconds), commits: host)
        sessions = Sessions(issuer: TokenIssuer(keys: keys), refreshTokens: refreshTokens, users: users)
        verifier = TokenVerifier(settings: tokenSettings, directory: directory)
    }

    /// Loads every region's published keys from this host's copy of the directory into the
    /// verifier (at start, and whenever keys may have changed: a rotation anywhere).
    public func reloadKeys() async throws {
        try await verifier.setKeys(publisher.publishedKeys())
    }

    /// Stops the hashing pool once the running hashes end.
    public func shutdown() async {
        await hasher.shutdown()
    }
}
