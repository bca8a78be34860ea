import Foundation
import PartitionDB
import Residency

/// A region's signing keys (spec/auth.md#signing-keys): private keys in the table
/// `auth.signing_keys` of a partition of the region, never anywhere else; their public halves
/// published through a `KeyPublishing`. The first use creates a key; `rotate` adds a new one
/// that signs from then on and keeps the previous one verifying until the last token it signed
/// has expired (`accessLifetime` + `leeway` later), after which it is no longer published as
/// verifying.
public final class RegionKeys: Sendable {
    public static let table = "auth.signing_keys"
    public let region: Region
    public let settings: TokenSettings
    private let database: Database
    private let partitionName: String
    private let commits: any ConditionalCommitting
    private let homes: any HomeAssigning
    private let publisher: any KeyPublishing
    private let now: @Sendable () -> Date

    /// What `list` shows of a key (no private part).
    public struct Info: Sendable, Equatable, Codable {
        public var kid: String
        public var algorithm: String
        public var created: Int64
        /// When it was rotated out; nil while it signs.
        public var retired: Int64?
        public var verifiesUntil: Int64?
        public var signing: Bool

        enum CodingKeys: String, CodingKey {
            case kid
            case algorithm
            case created
            case retired
            case verifiesUntil = "verifies_until"
            case signing
        }
    }

    /// Keys in `partition` of `database` (read from this host's copy), written through `commits`
    /// (default: in `database` itself; a `ClusterHost` writes on the region's primary).
    public init(
        database: Database, partition: String = "users", homes: any HomeAssigning, publisher: any KeyPublishing,
        settings: TokenSettings, commits: (any ConditionalCommitting)? = nil,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        region = database.region
        self.database = database
        partitionName = partition
        self.commits = commits ?? LocalCommits(database: database)
        self.homes = homes
        self.publisher = publisher
        self.settings = settings
        self.now = now
    }

    /// The records' owner: the region itself, as a subject whose home is the region (every
    /// record of a regional partition has an owner; this one is no person).
    public static func owner(of region: Region) -> SubjectID { try! SubjectID("pdb.signing-keys.\(region.name)") }

    /// The key that signs now; the first call in a region creates and publishes one.
    public func signingKey() async throws -> SigningKey {
        for _ in 0..<Self.attempts {
            let keys = try await stored()
            if let current = keys.first(where: { $0.retired == nil }) { return current.key }
            if let key = try await addKey(unchanged: keys) { return key }
        }
        throw AuthError.badKey(kid: "(none)", reason: "other hosts kept changing the region's keys; try again")
    }

    /// Adds a new signing key and rotates the current one out; returns the new one.
    @discardableResult
    public func rotate() async throws -> SigningKey {
        for _ in 0..<Self.attempts {
            if let key = try await addKey(unchanged: try await stored()) { return key }
        }
        throw AuthError.badKey(kid: "(none)", reason: "other hosts kept changing the region's keys; try again")
    }

    /// How many times a change reads the keys again after another host changed them first.
    static let attempts = 4

    /// Every key of the region: the signing one first, then the others newest first.
    public func list() async throws -> [Info] {
        try await stored().map { entry in
            Info(
                kid: entry.key.kid, algorithm: entry.key.algorithm.rawValue, created: entry.key.createdAt,
                retired: entry.retired, verifiesUntil: entry.verifiesUntil,
                signing: entry.retired == nil)
        }
    }

    /// How long a rotated-out key keeps verifying.
    private var overlap: Int64 { Int64((settings.accessLifetime + settings.leeway).rounded(.up)) }

    /// Adds a new key that signs from now on and retires every key that signs now, if the keys
    /// are still `unchanged` (as read) where the commit is made; nil when they are not.
    private func addKey(unchanged keys: [Stored]) async throws -> SigningKey? {
        let moment = now()
        let owner = Self.owner(of: region)
        _ = try await homes.assignHome(owner, to: region)
        let key = SigningKey.generate(region: region, algorithm: settings.algorithm, now: moment)
        let seconds = Int64(moment.timeIntervalSince1970.rounded(.down))
        let retiring = keys.filter { $0.retired == nil }.map(\.key)
        var steps = keys.map {
            ConditionalWrite.Step.expect(table: Self.table, key: Array($0.key.kid.utf8), value: $0.bytes)
        }
        steps.append(.expect(table: Self.table, key: Array(key.kid.utf8), value: nil))
        steps.append(
            .put(
                table: Self.table, key: Array(key.kid.utf8), value: Self.encode(key, retired: nil, verifiesUntil: nil),
                owner: owner))
        for old in retiring {
            let value = Self.encode(old, retired: seconds, verifiesUntil: seconds + overlap)
            steps.append(.put(table: Self.table, key: Array(old.kid.utf8), value: value, owner: owner))
        }
        // Published before it signs, so that no host sees a token of a key it cannot know yet.
        try await publisher.publish(try key.publicKey())
        let (commits, partition) = (self.commits, partitionName)
        let written = try await wrappingAsync { try await commits.commit(ConditionalWrite(steps), to: partition) }
        guard written else { return nil }
        for old in retiring { try await publisher.publish(try old.publicKey(verifiesUntil: seconds + overlap)) }
        return key
    }

    private struct Stored {
        let key: SigningKey
        let retired: Int64?
        let verifiesUntil: Int64?
        /// The record as stored, for the expectations of the next change.
        let bytes: [UInt8]
    }

    /// The signing key first, then the others newest first.
    private func stored() async throws -> [Stored] {
        let region = region
        return try await onBlockingPool(database, partitionName) { partition in
            try partition.read { tx in try Self.storedKeys(tx, region: region) }
        }
    }

    private static func storedKeys(_ tx: ReadTransaction, region: Region) throws -> [Stored] {
        guard try tx.hasTable(table) else { return [] }
        var keys: [Stored] = []
        try tx.scan(table) { record in
            keys.append(try decode(record.value, kid: String(decoding: record.key, as: UTF8.self), region: region))
            return true
        }
        return keys.sorted { a, b in
            if (a.retired == nil) != (b.retired == nil) { return a.retired == nil }
            return (a.key.createdAt, a.key.kid) > (b.key.createdAt, b.key.kid)
        }
    }

    private static func encode(_ key: SigningKey, retired: Int64?, verifiesUntil: Int64?) -> [UInt8] {
        let object: [String: Any] = [
            "v": 1, "alg": key.algorithm.rawValue, "private_key": Base64URL.encode(key.privateKey[...]),
            "created": key.createdAt, "retired": retired ?? 0, "verifies_until": verifiesUntil ?? 0,
        ]
        return Array(try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
    }

    private static func decode(_ bytes: [UInt8], kid: String, region: Region) throws -> Stored {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            object["v"] as? Int == 1, let algorithm = (object["alg"] as? String).flatMap(SigningAlgorithm.init),
            let privateKey = (object["private_key"] as? String).flatMap(Base64URL.decode), privateKey.count == 32,
            let created = object["created"] as? Int64, let retired = object["retired"] as? Int64,
            let verifiesUntil = object["verifies_until"] as? Int64
        else { throw AuthError.badKey(kid: kid, reason: "its stored record is damaged") }
        let key = SigningKey(kid: kid, region: region, algorithm: algorithm, privateKey: privateKey, createdAt: created)
        _ = try key.publicKey()
        return Stored(
            key: key, retired: retired == 0 ? nil : retired, verifiesUntil: verifiesUntil == 0 ? nil : verifiesUntil,
            bytes: bytes)
    }
}
