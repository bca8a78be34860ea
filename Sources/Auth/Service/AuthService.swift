import Foundation
import Logging
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
        let (settings, subjects, parameters) = try Self.check(configuration)
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

    /// The section's settings, subject key and password parameters, or a configuration error
    /// naming the key: the section is missing, the subject key file cannot be used, or the
    /// password parameters are not ones Argon2id takes. `pdb serve` checks this at start.
    @discardableResult
    public static func check(_ configuration: HostConfiguration) throws -> (
        AuthSettings, SubjectKey, PasswordParameters
    ) {
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
        return (settings, subjects, parameters)
    }

    /// The auth layer of a running host, once it can be built: a replica host waits until its
    /// copy of the auth partition has arrived. On the partition's primary it then makes the
    /// region's first signing key if there is none (and publishes it), trying again every
    /// second while the directory's primary cannot be reached. Nil when the task is cancelled
    /// first (the host stops).
    public static func start(on host: ClusterHost, logger: Logger) async -> AuthService? {
        let partition = host.configuration.auth?.partition ?? "users"
        var service: AuthService? = nil
        var reported = ""
        while service == nil, !Task.isCancelled {
            do {
                if try host.database.partitionNames().contains(partition) {
                    service = try AuthService(host: host)
                }
            } catch {
                if "\(error)" != reported {
                    logger.warning("auth not started", metadata: ["error": "\(error)"])
                    reported = "\(error)"
                }
            }
            if service == nil { try? await Task.sleep(for: .milliseconds(100)) }
        }
        guard let service else { return nil }
        var keyed = host.primary(ofReplica: partition) != nil
        while !keyed, !Task.isCancelled {
            do {
                let key = try await service.keys.signingKey()
                logger.info("auth ready", metadata: ["region": "\(service.region)", "signing_key": "\(key.kid)"])
                keyed = true
            } catch {
                logger.warning("no signing key yet; trying again in 1 s", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
        return service
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
