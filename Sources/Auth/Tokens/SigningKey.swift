import Crypto
import Foundation
import JWTKit
import PartitionDB

/// The algorithms a region signs access tokens with (spec/auth.md#tokens).
public enum SigningAlgorithm: String, Sendable, Codable, CaseIterable {
    /// ECDSA with P-256 and SHA-256 (RFC 7518 section 3.4): the default.
    case es256 = "ES256"
    /// Ed25519 (RFC 8037).
    case eddsa = "EdDSA"
}

/// A region's public signing key: what the directory publishes and every host verifies with.
/// `rawKey` is P-256's x || y (64 bytes) or Ed25519's 32 bytes.
public struct PublicSigningKey: Sendable, Equatable {
    public let kid: String
    public let region: Region
    public let algorithm: SigningAlgorithm
    public let rawKey: [UInt8]
    /// After this (seconds since 1970), the key no longer verifies; nil while it signs or has
    /// not been rotated out.
    public let verifiesUntil: Int64?

    public init(kid: String, region: Region, algorithm: SigningAlgorithm, rawKey: [UInt8], verifiesUntil: Int64?)
        throws
    {
        guard (1...64).contains(kid.utf8.count), kid.utf8.allSatisfy({ Base64URL.isAlphabet($0) }) else {
            throw AuthError.badKey(kid: kid, reason: "a kid is 1 to 64 characters of base64url")
        }
        switch algorithm {
        case .es256:
            guard rawKey.count == 64, (try? P256.Signing.PublicKey(rawRepresentation: rawKey)) != nil else {
                throw AuthError.badKey(kid: kid, reason: "not a P-256 point")
            }
        case .eddsa:
            guard rawKey.count == 32, (try? Curve25519.Signing.PublicKey(rawRepresentation: rawKey)) != nil else {
                throw AuthError.badKey(kid: kid, reason: "not an Ed25519 public key")
            }
        }
        self.kid = kid
        self.region = region
        self.algorithm = algorithm
        self.rawKey = rawKey
        self.verifiesUntil = verifiesUntil
    }

    /// The key as a JWK (RFC 7517): `kty`, `crv`, `x` (and `y`), `kid`, `alg`, `use`.
    public var jwk: [String: String] {
        switch algorithm {
        case .es256:
            return [
                "kty": "EC", "crv": "P-256", "x": Base64URL.encode(rawKey[0..<32]),
                "y": Base64URL.encode(rawKey[32...]),
                "kid": kid, "alg": algorithm.rawValue, "use": "sig",
            ]
        case .eddsa:
            return [
                "kty": "OKP", "crv": "Ed25519", "x": Base64URL.encode(rawKey[...]), "kid": kid,
                "alg": algorithm.rawValue, "use": "sig",
            ]
        }
    }

    /// A key from its JWK; anything but an EC P-256 or OKP Ed25519 public key with its own
    /// `alg` is refused.
    public init(jwk: [String: Any], region: Region, verifiesUntil: Int64?) throws {
        let kid = jwk["kid"] as? String ?? ""
        let keyType = jwk["kty"] as? String
        let curve = jwk["crv"] as? String
        let x = (jwk["x"] as? String).flatMap(Base64URL.decode)
        guard jwk["d"] == nil else { throw AuthError.badKey(kid: kid, reason: "a published key holds a private part") }
        switch (keyType, curve, jwk["alg"] as? String) {
        case ("EC", "P-256", SigningAlgorithm.es256.rawValue?):
            guard let x, let y = (jwk["y"] as? String).flatMap(Base64URL.decode), x.count == 32, y.count == 32 else {
                throw AuthError.badKey(kid: kid, reason: "x and y must be 32 bytes of base64url each")
            }
            try self.init(kid: kid, region: region, algorithm: .es256, rawKey: x + y, verifiesUntil: verifiesUntil)
        case ("OKP", "Ed25519", SigningAlgorithm.eddsa.rawValue?):
            guard let x else { throw AuthError.badKey(kid: kid, reason: "x must be base64url") }
            try self.init(kid: kid, region: region, algorithm: .eddsa, rawKey: x, verifiesUntil: verifiesUntil)
        default:
            throw AuthError.badKey(kid: kid, reason: "only EC P-256 with ES256 and OKP Ed25519 with EdDSA are used")
        }
    }

    /// jwt-kit's verifier of this key alone: one key, its own algorithm, no default to fall
    /// back to.
    func verifier() async throws -> any JWTAlgorithm {
        let collection = JWTKeyCollection()
        let id = JWKIdentifier(string: kid)
        switch algorithm {
        case .es256:
            await collection.add(
                ecdsa: try ES256PublicKey(backing: try P256.Signing.PublicKey(rawRepresentation: rawKey)), kid: id)
        case .eddsa:
            await collection.add(
                eddsa: EdDSA.PublicKey(backing: try Curve25519.Signing.PublicKey(rawRepresentation: rawKey)), kid: id)
        }
        return try await collection.getKey(for: id)
    }
}

/// A region's private signing key, kept only in a partition of that region (`RegionKeys`).
public struct SigningKey: Sendable {
    public let kid: String
    public let region: Region
    public let algorithm: SigningAlgorithm
    /// P-256's scalar (32 bytes) or Ed25519's seed (32 bytes).
    let privateKey: [UInt8]
    /// When it was made, seconds since 1970.
    public let createdAt: Int64

    /// A new random key with a random kid (16 bytes, base64url).
    public static func generate(region: Region, algorithm: SigningAlgorithm, now: Date) -> SigningKey {
        let kid = Base64URL.encode(SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) }[...])
        let privateKey: [UInt8]
        switch algorithm {
        case .es256: privateKey = Array(P256.Signing.PrivateKey().rawRepresentation)
        case .eddsa: privateKey = Array(Curve25519.Signing.PrivateKey().rawRepresentation)
        }
        return SigningKey(
            kid: kid, region: region, algorithm: algorithm, privateKey: privateKey,
            createdAt: Int64(now.timeIntervalSince1970.rounded(.down)))
    }

    init(kid: String, region: Region, algorithm: SigningAlgorithm, privateKey: [UInt8], createdAt: Int64) {
        self.kid = kid
        self.region = region
        self.algorithm = algorithm
        self.privateKey = privateKey
        self.createdAt = createdAt
    }

    /// The public half, to publish.
    public func publicKey(verifiesUntil: Int64? = nil) throws -> PublicSigningKey {
        let raw: [UInt8]
        switch algorithm {
        case .es256: raw = Array(try P256.Signing.PrivateKey(rawRepresentation: privateKey).publicKey.rawRepresentation)
        case .eddsa:
            raw = Array(try Curve25519.Signing.PrivateKey(rawRepresentation: privateKey).publicKey.rawRepresentation)
        }
        return try PublicSigningKey(
            kid: kid, region: region, algorithm: algorithm, rawKey: raw, verifiesUntil: verifiesUntil)
    }

    /// jwt-kit's key collection holding this key alone, for signing.
    func signer() async throws -> JWTKeyCollection {
        let collection = JWTKeyCollection()
        let id = JWKIdentifier(string: kid)
        switch algorithm {
        case .es256:
            await collection.add(
                ecdsa: try ES256PrivateKey(backing: try P256.Signing.PrivateKey(rawRepresentation: privateKey)), kid: id
            )
        case .eddsa:
            await collection.add(
                eddsa: EdDSA.PrivateKey(backing: try Curve25519.Signing.PrivateKey(rawRepresentation: privateKey)),
                kid: id)
        }
        return collection
    }
}
