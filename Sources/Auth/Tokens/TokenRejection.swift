/// Why an access token does not verify (spec/auth.md#verification). Each is checked in this
/// order; the first that applies is the answer.
public enum TokenRejection: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not three base64url parts of JSON, too long, or claims of the wrong types.
    case malformed(reason: String)
    /// `alg` is `none` in some spelling: an unsecured token.
    case unsecured
    /// The header has no `kid`.
    case missingKeyID
    /// The `kid` names no key of any region's published set (or one past its time).
    case unknownKey(kid: String)
    /// The `alg` is not the named key's own algorithm.
    case algorithmMismatch(alg: String, keyAlgorithm: String)
    case badSignature
    /// `iss` is the issuer of another region than the one that owns the `kid`.
    case issuerDoesNotOwnKey(issuer: String)
    /// `iss` is no region's issuer.
    case wrongIssuer(issuer: String)
    case wrongAudience
    /// `token_use` is not `access`.
    case wrongTokenUse(String)
    case expired
    case notYetValid
    /// `custom:region` is not the region of the key that signed the token.
    case regionNotTheKeys(claim: String, keyRegion: String)
    /// `custom:region` is not the subject's home in the directory (nil: the subject has none).
    case regionNotHome(claim: String, home: String?)

    public var description: String {
        switch self {
        case .malformed(let reason): return "it is malformed (\(reason))"
        case .unsecured: return "it is unsecured (alg none)"
        case .missingKeyID: return "its header names no kid"
        case .unknownKey(let kid): return "its kid \(kid.prefix(64)) names no known signing key"
        case .algorithmMismatch(let alg, let keyAlgorithm):
            return "its alg \(alg.prefix(16)) is not its key's algorithm \(keyAlgorithm)"
        case .badSignature: return "its signature does not verify"
        case .issuerDoesNotOwnKey(let issuer): return "its issuer \(issuer.prefix(128)) does not own its kid"
        case .wrongIssuer(let issuer): return "its issuer \(issuer.prefix(128)) is not one of this cluster's"
        case .wrongAudience: return "its audience is not this cluster's"
        case .wrongTokenUse(let use): return "its token_use is \(use.prefix(32)), not access"
        case .expired: return "it has expired"
        case .notYetValid: return "it is not valid yet"
        case .regionNotTheKeys(let claim, let keyRegion):
            return "its custom:region \(claim.prefix(32)) is not the region \(keyRegion) of its key"
        case .regionNotHome(let claim, let home):
            return "its custom:region \(claim.prefix(32)) is not the subject's home (\(home ?? "none"))"
        }
    }
}
