import Crypto
import Foundation
import JWTKit
import NIOConcurrencyHelpers
import PartitionDB

/// An access token as issued.
public struct IssuedToken: Sendable, Equatable {
    public let token: String
    public let kid: String
    /// Seconds until it expires (OAuth 2.0's `expires_in`).
    public let expiresIn: Int
    public let claims: AccessClaims
}

/// Signs access tokens with the region's current key (spec/auth.md#tokens), through jwt-kit.
public final class TokenIssuer: Sendable {
    private let keys: RegionKeys
    private let now: @Sendable () -> Date
    private let signers = NIOLockedValueBox<[String: JWTKeyCollection]>([:])

    public init(keys: RegionKeys, now: @escaping @Sendable () -> Date = { Date() }) {
        self.keys = keys
        self.now = now
    }

    /// A new access token for `subject`, whose home is this region.
    public func accessToken(for subject: SubjectID) async throws -> IssuedToken {
        let key = try await keys.signingKey()
        let settings = keys.settings
        let issued = Int64(now().timeIntervalSince1970.rounded(.down))
        let lifetime = Int64(settings.accessLifetime.rounded(.down))
        let claims = AccessClaims(
            issuer: settings.issuer(of: keys.region), audience: [settings.audience], subject: subject.rawValue,
            region: keys.region.name, issuedAt: issued, notBefore: issued, expires: issued + lifetime,
            tokenID: Base64URL.encode(SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) }[...]),
            tokenUse: "access")
        let signer: JWTKeyCollection
        if let cached = signers.withLockedValue({ $0[key.kid] }) {
            signer = cached
        } else {
            signer = try await key.signer()
            signers.withLockedValue { $0[key.kid] = signer }
        }
        let token = try await signer.sign(claims, kid: JWKIdentifier(string: key.kid))
        return IssuedToken(token: token, kid: key.kid, expiresIn: Int(lifetime), claims: claims)
    }
}
