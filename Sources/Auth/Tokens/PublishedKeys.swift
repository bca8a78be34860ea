import Foundation
import PartitionDB
import Residency

/// Where the regions' public signing keys are published, so every host of every region can
/// verify every region's tokens offline (spec/auth.md#key-distribution).
public protocol KeyPublishing: Sendable {
    /// Adds `key` or replaces its entry (a rotation sets `verifiesUntil`).
    func publish(_ key: PublicSigningKey) async throws
    /// Every region's published keys, those past their `verifiesUntil` included.
    func publishedKeys() async throws -> [PublicSigningKey]
}

/// The published keys in the reserved table `pdb.jwks` of this database's global partition:
/// key the `kid`, value `{"v":1,"region":…,"verifies_until":…,"jwk":{…}}`. Public keys are
/// not personal data, so they may cross regions with the directory. Reads come from this
/// host's copy; writes go to the database itself, or with a `host` to the directory's primary
/// (`ClusterHost.publishKey`, forwarded from any other host).
public final class DirectoryKeyPublisher: KeyPublishing {
    public static let table = ClusterHost.publishedKeysTable
    private let database: Database
    private let host: ClusterHost?

    public init(database: Database, host: ClusterHost? = nil) {
        self.database = database
        self.host = host
    }

    public func publish(_ key: PublicSigningKey) async throws {
        let value = Self.encode(key)
        if let host {
            try await wrappingAsync { try await host.publishKey(kid: key.kid, entry: value) }
            return
        }
        try await onBlockingPool(database, Database.globalPartitionName) { global in
            try global.writeReserved(durability: .durable) { tx in
                _ = try tx.createTable(Self.table)
                try tx.put(Self.table, Array(key.kid.utf8), value)
            }
        }
    }

    /// The keys that decode. An entry that does not (damaged, a private part, another key type)
    /// is left out, so one bad entry never stops a host from verifying the others' tokens; its
    /// own tokens are refused as `unknownKey`, and `pdb audit` reports the entry.
    public func publishedKeys() async throws -> [PublicSigningKey] {
        try await onBlockingPool(database, Database.globalPartitionName) { global in
            try global.read { tx in
                guard try tx.hasTable(Self.table) else { return [] }
                var keys: [PublicSigningKey] = []
                try tx.scan(Self.table) { record in
                    if let key = try? Self.decode(record.value, kid: String(decoding: record.key, as: UTF8.self)) {
                        keys.append(key)
                    }
                    return true
                }
                return keys
            }
        }
    }

    static func encode(_ key: PublicSigningKey) -> [UInt8] {
        let object: [String: Any] = [
            "v": 1, "region": key.region.name, "verifies_until": key.verifiesUntil ?? 0, "jwk": key.jwk,
        ]
        return Array(try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
    }

    static func decode(_ bytes: [UInt8], kid: String) throws -> PublicSigningKey {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            object["v"] as? Int == 1, let regionName = object["region"] as? String,
            let region = try? Region(regionName), !region.isGlobal,
            let until = object["verifies_until"] as? Int64, until >= 0, let jwk = object["jwk"] as? [String: Any],
            jwk["kid"] as? String == kid
        else { throw AuthError.badKey(kid: kid, reason: "its published entry is damaged") }
        return try PublicSigningKey(jwk: jwk, region: region, verifiesUntil: until == 0 ? nil : until)
    }
}

/// A JWK Set (RFC 7517 section 5) of `keys`, as `/.well-known/jwks.json` serves it: those that
/// still verify at `moment`, in kid order.
public func jwksJSON(_ keys: [PublicSigningKey], at moment: Date) -> String {
    let live = keys.filter { !$0.hasRetired(at: moment) }.sorted { $0.kid < $1.kid }
    let data = try! JSONSerialization.data(
        withJSONObject: ["keys": live.map(\.jwk)], options: [.sortedKeys, .withoutEscapingSlashes])
    return String(decoding: data, as: UTF8.self)
}
