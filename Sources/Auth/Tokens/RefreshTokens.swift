import Crypto
import Foundation
import PartitionDB
import Residency

/// Refresh tokens (spec/auth.md#refresh-tokens): opaque, 256 random bits, stored only as their
/// SHA-256 in the home region, single-use. Each use spends the token and returns a new one of
/// the same family; a spent token used again revokes its whole family (GoTrue's rule: a stolen
/// token and its thief's successors die with it), and so does logout.
public final class RefreshTokens: Sendable {
    public static let tokensTable = "auth.refresh_tokens"
    public static let familiesTable = "auth.refresh_families"
    private let database: Database
    private let partitionName: String
    private let commits: any ConditionalCommitting
    /// How long a refresh token can be used.
    public let lifetime: TimeInterval
    private let now: @Sendable () -> Date
    /// How many times a use reads again after another commit changed its token or family
    /// first (a concurrent use of the same token, or a logout). Their states only move forward
    /// (unused to spent, live to revoked), so a third read finds nothing left to change.
    static let attempts = 3

    /// Tokens in `partition` of `database` (read from this host's copy), written through
    /// `commits` (default: in `database` itself; a `ClusterHost` writes on the region's primary).
    public init(
        database: Database, partition: String = "users", lifetime: TimeInterval = 30 * 24 * 3600,
        commits: (any ConditionalCommitting)? = nil, now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.database = database
        partitionName = partition
        self.commits = commits ?? LocalCommits(database: database)
        self.lifetime = lifetime
        self.now = now
    }

    /// A new token, of a new family, for `subject` (whose home is this region).
    public func issue(for subject: SubjectID) async throws -> String {
        let token = Self.randomToken()
        let family = Self.randomToken(bytes: 16)
        let moment = seconds()
        let expires = moment + Int64(lifetime)
        // Both keys are fresh random values: nothing to expect but their absence.
        let written = try await commit([
            .expect(table: Self.familiesTable, key: Array(family.utf8), value: nil),
            .expect(table: Self.tokensTable, key: Self.key(token), value: nil),
            .put(
                table: Self.familiesTable, key: Array(family.utf8),
                value: Self.encode(["v": 1, "revoked": false, "created": moment]), owner: subject),
            .put(
                table: Self.tokensTable, key: Self.key(token),
                value: Self.encodeToken(subject: subject, family: family, used: false, expires: expires),
                owner: subject),
        ])
        guard written else { throw AuthError.invalidRefreshToken }
        return token
    }

    /// Spends `token` and returns its subject and the family's next token. A token that is
    /// unknown, expired or of a revoked family is `invalidRefreshToken`; one already spent
    /// revokes its family, then is `refreshTokenReused`. Of two uses of one token at once, one
    /// spends it and the other is a reuse.
    public func rotate(_ token: String) async throws -> (subject: SubjectID, token: String) {
        let next = Self.randomToken()
        for _ in 0..<Self.attempts {
            let moment = seconds()
            guard let stored = try await lookUp(token), let family = Self.decode(stored.familyBytes),
                let revoked = family["revoked"] as? Bool
            else { throw AuthError.invalidRefreshToken }
            if revoked || stored.expires < moment { throw AuthError.invalidRefreshToken }
            let unchanged = stored.expectations(token)
            if stored.used {
                var revokedFamily = family
                revokedFamily["revoked"] = true
                let put = ConditionalWrite.Step.put(
                    table: Self.familiesTable, key: Array(stored.family.utf8), value: Self.encode(revokedFamily),
                    owner: stored.subject)
                if try await commit(unchanged + [put]) { throw AuthError.refreshTokenReused }
                continue
            }
            let spent = ConditionalWrite.Step.put(
                table: Self.tokensTable, key: Self.key(token),
                value: Self.encodeToken(
                    subject: stored.subject, family: stored.family, used: true, expires: stored.expires),
                owner: stored.subject)
            let successor = ConditionalWrite.Step.put(
                table: Self.tokensTable, key: Self.key(next),
                value: Self.encodeToken(
                    subject: stored.subject, family: stored.family, used: false, expires: moment + Int64(lifetime)),
                owner: stored.subject)
            if try await commit(unchanged + [spent, successor]) { return (stored.subject, next) }
        }
        throw AuthError.invalidRefreshToken
    }

    /// Revokes the family of `token` (logout). Returns false when the token is unknown.
    @discardableResult
    public func revokeFamily(of token: String) async throws -> Bool {
        for _ in 0..<Self.attempts {
            guard let stored = try await lookUp(token), var family = Self.decode(stored.familyBytes) else {
                return false
            }
            if family["revoked"] as? Bool == true { return true }
            family["revoked"] = true
            let put = ConditionalWrite.Step.put(
                table: Self.familiesTable, key: Array(stored.family.utf8), value: Self.encode(family),
                owner: stored.subject)
            if try await commit(stored.expectations(token) + [put]) { return true }
        }
        return true
    }

    private struct Stored: Sendable {
        let subject: SubjectID
        let family: String
        let used: Bool
        let expires: Int64
        let tokenBytes: [UInt8]
        let familyBytes: [UInt8]

        /// That the token's and its family's records are still as read.
        func expectations(_ token: String) -> [ConditionalWrite.Step] {
            [
                .expect(table: RefreshTokens.tokensTable, key: RefreshTokens.key(token), value: tokenBytes),
                .expect(table: RefreshTokens.familiesTable, key: Array(family.utf8), value: familyBytes),
            ]
        }
    }

    /// The token's record and its family's in this host's copy.
    private func lookUp(_ token: String) async throws -> Stored? {
        try await onBlockingPool(database, partitionName) { partition in
            try partition.read { tx in
                guard token.utf8.count <= 128, try tx.hasTable(Self.tokensTable), try tx.hasTable(Self.familiesTable),
                    let bytes = try tx.get(Self.tokensTable, Self.key(token)), let object = Self.decode(bytes),
                    let subject = (object["subject"] as? String).flatMap({ try? SubjectID($0) }),
                    let family = object["family"] as? String, let used = object["used"] as? Bool,
                    let expires = object["expires"] as? Int64,
                    let familyBytes = try tx.get(Self.familiesTable, Array(family.utf8))
                else { return nil }
                return Stored(
                    subject: subject, family: family, used: used, expires: expires, tokenBytes: bytes,
                    familyBytes: familyBytes)
            }
        }
    }

    private func commit(_ steps: [ConditionalWrite.Step]) async throws -> Bool {
        let (commits, partition) = (self.commits, partitionName)
        return try await wrappingAsync { try await commits.commit(ConditionalWrite(steps), to: partition) }
    }

    /// The stored key of a token: the hex SHA-256 of its text. The token itself is never kept.
    static func key(_ token: String) -> [UInt8] {
        Array(SHA256.hash(data: Array(token.utf8)).map { String(format: "%02x", $0) }.joined().utf8)
    }

    private static func randomToken(bytes: Int = 32) -> String {
        Base64URL.encode(SymmetricKey(size: SymmetricKeySize(bitCount: bytes * 8)).withUnsafeBytes { Array($0) }[...])
    }

    private static func encodeToken(subject: SubjectID, family: String, used: Bool, expires: Int64) -> [UInt8] {
        encode(["v": 1, "subject": subject.rawValue, "family": family, "used": used, "expires": expires])
    }

    private static func encode(_ object: [String: Any]) -> [UInt8] {
        Array(try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
    }

    private static func decode(_ bytes: [UInt8]) -> [String: Any]? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            object["v"] as? Int == 1
        else { return nil }
        return object
    }

    private func seconds() -> Int64 { Int64(now().timeIntervalSince1970.rounded(.down)) }
}
