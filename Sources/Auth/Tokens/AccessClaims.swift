import Foundation
import JWTKit
import PartitionDB

/// How this cluster's access tokens look (spec/auth.md#tokens).
public struct TokenSettings: Sendable, Equatable {
    /// A region's `iss` is this, `/`, the region: `https://auth.example.com/eu`.
    public var issuerBase: String
    /// The `aud` every token carries and every verifier requires.
    public var audience: String
    /// `exp` − `iat` of an access token.
    public var accessLifetime: TimeInterval
    /// How far `exp` and `nbf` may be off for clocks that disagree.
    public var leeway: TimeInterval
    /// The algorithm of new signing keys.
    public var algorithm: SigningAlgorithm

    public init(
        issuerBase: String, audience: String, accessLifetime: TimeInterval = 15 * 60, leeway: TimeInterval = 30,
        algorithm: SigningAlgorithm = .es256
    ) {
        self.issuerBase = issuerBase.hasSuffix("/") ? String(issuerBase.dropLast()) : issuerBase
        self.audience = audience
        self.accessLifetime = accessLifetime
        self.leeway = leeway
        self.algorithm = algorithm
    }

    public func issuer(of region: Region) -> String { "\(issuerBase)/\(region.name)" }
}

/// The claims of an access token (RFC 7519 names, plus `custom:region` and `token_use`).
public struct AccessClaims: JWTPayload, Equatable {
    public var issuer: String
    public var audience: [String]
    public var subject: String
    public var region: String
    public var issuedAt: Int64
    public var notBefore: Int64
    public var expires: Int64
    public var tokenID: String
    public var tokenUse: String

    public init(
        issuer: String, audience: [String], subject: String, region: String, issuedAt: Int64, notBefore: Int64,
        expires: Int64, tokenID: String, tokenUse: String
    ) {
        self.issuer = issuer
        self.audience = audience
        self.subject = subject
        self.region = region
        self.issuedAt = issuedAt
        self.notBefore = notBefore
        self.expires = expires
        self.tokenID = tokenID
        self.tokenUse = tokenUse
    }

    enum CodingKeys: String, CodingKey {
        case issuer = "iss"
        case audience = "aud"
        case subject = "sub"
        case region = "custom:region"
        case issuedAt = "iat"
        case notBefore = "nbf"
        case expires = "exp"
        case tokenID = "jti"
        case tokenUse = "token_use"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        issuer = try container.decode(String.self, forKey: .issuer)
        // RFC 7519 section 4.1.3: one string or an array of strings.
        if let one = try? container.decode(String.self, forKey: .audience) {
            audience = [one]
        } else {
            audience = try container.decode([String].self, forKey: .audience)
        }
        subject = try container.decode(String.self, forKey: .subject)
        region = try container.decode(String.self, forKey: .region)
        issuedAt = try Self.seconds(container, .issuedAt)
        notBefore = try Self.seconds(container, .notBefore)
        expires = try Self.seconds(container, .expires)
        tokenID = try container.decode(String.self, forKey: .tokenID)
        tokenUse = try container.decode(String.self, forKey: .tokenUse)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(issuer, forKey: .issuer)
        if audience.count == 1 {
            try container.encode(audience[0], forKey: .audience)
        } else {
            try container.encode(audience, forKey: .audience)
        }
        try container.encode(subject, forKey: .subject)
        try container.encode(region, forKey: .region)
        try container.encode(issuedAt, forKey: .issuedAt)
        try container.encode(notBefore, forKey: .notBefore)
        try container.encode(expires, forKey: .expires)
        try container.encode(tokenID, forKey: .tokenID)
        try container.encode(tokenUse, forKey: .tokenUse)
    }

    /// A NumericDate: whole or fractional seconds, within what an Int64 holds.
    private static func seconds(_ container: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) throws -> Int64 {
        let value = try container.decode(Double.self, forKey: key)
        guard value.isFinite, abs(value) < 1e15 else {
            throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: "not a date")
        }
        return Int64(value.rounded(.down))
    }

    /// jwt-kit calls this after the signature; `TokenVerifier` checks every claim itself,
    /// with its leeway and its typed rejections.
    public func verify(using algorithm: some JWTAlgorithm) async throws {}
}
