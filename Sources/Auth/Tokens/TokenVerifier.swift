import Foundation
import JWTKit
import NIOConcurrencyHelpers
import PartitionDB

/// A verified access token: whose it is and which region it is for.
public struct VerifiedAccess: Sendable, Equatable {
    public let subject: SubjectID
    public let region: Region
    public let kid: String
    public let claims: AccessClaims
}

/// Verifies access tokens offline, on any host of any region, against the published keys of
/// every region (spec/auth.md#verification). The header is read and checked here before any
/// key is touched: the `kid` picks the one key it names (never a default: jwt-kit falls back to
/// its first key when no `kid` matches, so its key collection is never asked to choose), and
/// that key's own algorithm verifies the signature, whatever `alg` says.
public final class TokenVerifier: Sendable {
    public let settings: TokenSettings
    private let directory: any HomeRegionResolver
    private let now: @Sendable () -> Date
    private let keys = NIOLockedValueBox<[String: Entry]>([:])
    private let headers = NIOLockedValueBox<[String: (alg: String, kid: String)]>([:])
    /// Headers whose checks are remembered; past this many the memory starts afresh.
    static let maxCachedHeaders = 64

    /// Longer tokens are refused before any parsing.
    public static let maxTokenBytes = 8192

    struct Entry: Sendable {
        let key: PublicSigningKey
        let verifier: any JWTAlgorithm
    }

    public init(
        settings: TokenSettings, directory: any HomeRegionResolver, now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.settings = settings
        self.directory = directory
        self.now = now
    }

    /// Replaces the known keys with `published` (every region's, from the directory).
    public func setKeys(_ published: [PublicSigningKey]) async throws {
        var entries: [String: Entry] = [:]
        for key in published { entries[key.kid] = Entry(key: key, verifier: try await key.verifier()) }
        let fresh = entries
        keys.withLockedValue { $0 = fresh }
    }

    public var knownKeyIDs: [String] { keys.withLockedValue { $0.keys.sorted() } }

    /// The subject and region of `token`, or `AuthError.tokenRejected` with the first rule it
    /// breaks.
    public func verify(_ token: String) throws -> VerifiedAccess {
        do {
            return try check(token)
        } catch let rejection as TokenRejection {
            throw AuthError.tokenRejected(rejection)
        }
    }

    private func check(_ token: String) throws -> VerifiedAccess {
        guard token.utf8.count <= Self.maxTokenBytes else { throw TokenRejection.malformed(reason: "too long") }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw TokenRejection.malformed(reason: "not three parts") }
        let (alg, kid) = try header(parts[0])
        let moment = now()
        guard let entry = keys.withLockedValue({ $0[kid] }), !entry.key.hasRetired(at: moment) else {
            throw TokenRejection.unknownKey(kid: kid)
        }
        guard alg == entry.key.algorithm.rawValue else {
            throw TokenRejection.algorithmMismatch(alg: alg, keyAlgorithm: entry.key.algorithm.rawValue)
        }
        guard let signature = Base64URL.decode(parts[2]),
            (try? entry.verifier.verify(signature, signs: Array("\(parts[0]).\(parts[1])".utf8))) == true
        else { throw TokenRejection.badSignature }
        guard let payload = Base64URL.decode(parts[1]),
            let claims = try? JSONDecoder().decode(AccessClaims.self, from: Data(payload))
        else { throw TokenRejection.malformed(reason: "the claims are not those of an access token") }
        return try checkClaims(claims, key: entry.key, at: moment)
    }

    /// The `alg` and `kid` of an encoded header, checked. A region's tokens share a handful of
    /// headers, so the answers for the last ones are kept (only for headers that pass).
    private func header(_ encoded: Substring) throws -> (alg: String, kid: String) {
        let key = String(encoded)
        if let known = headers.withLockedValue({ $0[key] }) { return known }
        guard let bytes = Base64URL.decode(encoded),
            let header = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
        else { throw TokenRejection.malformed(reason: "the header is not base64url JSON") }
        guard let alg = header["alg"] as? String else { throw TokenRejection.malformed(reason: "no alg") }
        if alg.lowercased() == "none" { throw TokenRejection.unsecured }
        guard header["crit"] == nil else { throw TokenRejection.malformed(reason: "crit is not supported") }
        guard let kid = header["kid"] as? String else { throw TokenRejection.missingKeyID }
        headers.withLockedValue { headers in
            if headers.count >= Self.maxCachedHeaders { headers.removeAll(keepingCapacity: true) }
            headers[key] = (alg, kid)
        }
        return (alg, kid)
    }

    private func checkClaims(_ claims: AccessClaims, key: PublicSigningKey, at moment: Date) throws -> VerifiedAccess {
        if claims.issuer != settings.issuer(of: key.region) {
            let prefix = settings.issuerBase + "/"
            if claims.issuer.hasPrefix(prefix), (try? Region(String(claims.issuer.dropFirst(prefix.count)))) != nil {
                throw TokenRejection.issuerDoesNotOwnKey(issuer: claims.issuer)
            }
            throw TokenRejection.wrongIssuer(issuer: claims.issuer)
        }
        guard claims.audience.contains(settings.audience) else { throw TokenRejection.wrongAudience }
        guard claims.tokenUse == "access" else { throw TokenRejection.wrongTokenUse(claims.tokenUse) }
        let seconds = moment.timeIntervalSince1970
        guard seconds <= Double(claims.expires) + settings.leeway else { throw TokenRejection.expired }
        guard seconds + settings.leeway >= Double(claims.notBefore) else { throw TokenRejection.notYetValid }
        guard claims.region == key.region.name else {
            throw TokenRejection.regionNotTheKeys(claim: claims.region, keyRegion: key.region.name)
        }
        guard let subject = try? SubjectID(claims.subject) else {
            throw TokenRejection.malformed(reason: "sub is not a subject id")
        }
        let home = try wrapping { try directory.homeRegion(of: subject) }
        guard home == key.region else { throw TokenRejection.regionNotHome(claim: claims.region, home: home?.name) }
        return VerifiedAccess(subject: subject, region: key.region, kid: key.kid, claims: claims)
    }
}

extension PublicSigningKey {
    /// Whether the key was rotated out and its last tokens have expired.
    func hasRetired(at moment: Date) -> Bool {
        guard let verifiesUntil else { return false }
        return moment.timeIntervalSince1970 > Double(verifiesUntil)
    }
}
