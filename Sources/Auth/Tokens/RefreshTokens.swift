import Crypto
import Foundation
import PartitionDB

/// Refresh tokens (spec/auth.md#refresh-tokens): opaque, 256 random bits, stored only as their
/// SHA-256 in the home region, single-use. Each use spends the token and returns a new one of
/// the same family; a spent token used again revokes its whole family (GoTrue's rule: a stolen
/// token and its thief's successors die with it), and so does logout.
public final class RefreshTokens: Sendable {
    public static let tokensTable = "auth.refresh_tokens"
    public static let familiesTable = "auth.refresh_families"
    private let database: Database
    private let partitionName: String
    /// How long a refresh token can be used.
    public let lifetime: TimeInterval
    private let now: @Sendable () -> Date

    public init(
        database: Database, partition: String = "users", lifetime: TimeInterval = 30 * 24 * 3600,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.database = database
        partitionName = partition
        self.lifetime = lifetime
        self.now = now
    }

    /// A new token, of a new family, for `subject` (whose home is this region).
    public func issue(for subject: SubjectID) async throws -> String {
        let token = Self.randomToken()
        let family = Self.randomToken(bytes: 16)
        let moment = seconds()
        let expires = moment + Int64(lifetime)
        try await onBlockingPool(database, partitionName) { partition in
            try partition.write(durability: .durable) { tx in
                _ = try tx.createTable(Self.tokensTable)
                _ = try tx.createTable(Self.familiesTable)
                try tx.put(
                    Self.familiesTable, Array(family.utf8), Self.encode(["v": 1, "revoked": false, "created": moment]),
                    owner: subject)
                try tx.put(
                    Self.tokensTable, Self.key(token),
                    Self.encodeToken(subject: subject, family: family, used: false, expires: expires), owner: subject)
            }
        }
        return token
    }

    /// Spends `token` and returns its subject and the family's next token. A token that is
    /// unknown, expired or of a revoked family is `invalidRefreshToken`; one already spent
    /// revokes its family, then is `refreshTokenReused`.
    public func rotate(_ token: String) async throws -> (subject: SubjectID, token: String) {
        let next = Self.randomToken()
        let moment = seconds()
        let expires = moment + Int64(lifetime)
        enum Outcome: Sendable {
            case rotated(SubjectID)
            case reused
            case invalid
        }
        let outcome: Outcome = try await onBlockingPool(database, partitionName) { partition in
            try partition.write(durability: .durable) { tx in
                guard let stored = try Self.lookUp(tx, token),
                    let familyBytes = try tx.get(Self.familiesTable, Array(stored.family.utf8)),
                    let family = Self.decode(familyBytes), let revoked = family["revoked"] as? Bool
                else { return .invalid }
                if revoked || stored.expires < moment { return .invalid }
                if stored.used {
                    var revokedFamily = family
                    revokedFamily["revoked"] = true
                    try tx.put(
                        Self.familiesTable, Array(stored.family.utf8), Self.encode(revokedFamily), owner: stored.subject
                    )
                    return .reused
                }
                try tx.put(
                    Self.tokensTable, Self.key(token),
                    Self.encodeToken(
                        subject: stored.subject, family: stored.family, used: true, expires: stored.expires),
                    owner: stored.subject)
                try tx.put(
                    Self.tokensTable, Self.key(next),
                    Self.encodeToken(subject: stored.subject, family: stored.family, used: false, expires: expires),
                    owner: stored.subject)
                return .rotated(stored.subject)
            }
        }
        switch outcome {
        case .rotated(let subject): return (subject, next)
        case .reused: throw AuthError.refreshTokenReused
        case .invalid: throw AuthError.invalidRefreshToken
        }
    }

    /// Revokes the family of `token` (logout). Returns false when the token is unknown.
    @discardableResult
    public func revokeFamily(of token: String) async throws -> Bool {
        try await onBlockingPool(database, partitionName) { partition in
            guard try partition.read({ tx in try Self.lookUp(tx, token) }) != nil else { return false }
            return try partition.write(durability: .durable) { tx in
                guard let stored = try Self.lookUp(tx, token),
                    var family = try tx.get(Self.familiesTable, Array(stored.family.utf8)).flatMap(Self.decode)
                else { return false }
                family["revoked"] = true
                try tx.put(Self.familiesTable, Array(stored.family.utf8), Self.encode(family), owner: stored.subject)
                return true
            }
        }
    }

    private struct Stored {
        let subject: SubjectID
        let family: String
        let used: Bool
        let expires: Int64
    }

    private static func lookUp(_ tx: ReadTransaction, _ token: String) throws -> Stored? {
        guard token.utf8.count <= 128, try tx.hasTable(tokensTable), try tx.hasTable(familiesTable),
            let bytes = try tx.get(tokensTable, key(token)), let object = decode(bytes),
            let subject = (object["subject"] as? String).flatMap({ try? SubjectID($0) }),
            let family = object["family"] as? String, let used = object["used"] as? Bool,
            let expires = object["expires"] as? Int64
        else { return nil }
        return Stored(subject: subject, family: family, used: used, expires: expires)
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
