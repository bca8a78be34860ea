import Foundation
import PartitionDB

/// One user, as kept in the table `auth.users` of a partition of the user's home region, keyed
/// by the subject id and owned by the subject (spec/auth.md#user-records). The only personal
/// data of the auth layer; nothing of it is written outside the home region.
public struct UserRecord: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable {
        case active
        case disabled
    }

    public static let version = 1

    public var version: Int
    /// The normalized login identifier (`LoginIdentifier.normalized`).
    public var login: String
    /// The Argon2id PHC string.
    public var passwordHash: String
    public var status: Status
    /// When the user signed up, in seconds since 1970 (UTC).
    public var createdAt: Int64
    /// Failed logins since the last successful one.
    public var failedAttempts: Int
    /// Until when logins are refused, in milliseconds since 1970; 0 when not locked.
    public var lockedUntilMilliseconds: Int64

    public init(login: LoginIdentifier, passwordHash: PasswordHash, createdAt: Date) {
        version = Self.version
        self.login = login.normalized
        self.passwordHash = passwordHash.phc
        status = .active
        self.createdAt = Int64(createdAt.timeIntervalSince1970.rounded(.down))
        failedAttempts = 0
        lockedUntilMilliseconds = 0
    }

    enum CodingKeys: String, CodingKey {
        case version = "v"
        case login
        case passwordHash = "password_hash"
        case status
        case createdAt = "created"
        case failedAttempts = "failed_attempts"
        case lockedUntilMilliseconds = "locked_until_ms"
    }

    /// The stored form: JSON with sorted keys.
    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Strings, integers and an enum: encoding cannot fail.
        return Array(try! encoder.encode(self))
    }

    /// A stored record; damage is `badUserRecord`, never a crash or a default.
    public static func decode(_ bytes: [UInt8], subject: SubjectID) throws -> UserRecord {
        let record: UserRecord
        do {
            record = try JSONDecoder().decode(UserRecord.self, from: Data(bytes))
        } catch {
            throw AuthError.badUserRecord(subject: subject.rawValue, reason: "it is not the record's JSON")
        }
        guard record.version == Self.version else {
            throw AuthError.badUserRecord(subject: subject.rawValue, reason: "version \(record.version) is not 1")
        }
        guard record.failedAttempts >= 0, record.lockedUntilMilliseconds >= 0 else {
            throw AuthError.badUserRecord(subject: subject.rawValue, reason: "a counter is negative")
        }
        return record
    }
}
