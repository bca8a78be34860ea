import PartitionDB
import Residency

/// Errors of the auth layer: input a person typed, the answers a login may get, stored records
/// and hashes, and the layers below. The answers to a caller never say whether a login exists
/// (spec/auth.md#answers).
public enum AuthError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A login identifier that is not an e-mail address under spec/auth.md#login-identifiers.
    case invalidLogin(reason: String)
    /// A password outside the rules (8 to 1,024 bytes of UTF-8), refused before hashing.
    case invalidPassword(reason: String)
    /// A country that is neither an ISO 3166-1 alpha-2 code nor a subdivision of one.
    case invalidCountry(String)
    /// A wrong login or password: one answer for both, so a caller cannot tell which.
    case invalidCredentials
    /// Too many failed logins for this login or from this client address; the next attempt is
    /// considered after `retryAfterSeconds`.
    case tooManyAttempts(retryAfterSeconds: Int)
    /// The login and password are right but the account is disabled.
    case accountDisabled
    /// The hashing pool's queue is full: the host is overloaded; try again later.
    case busy(queued: Int)
    /// A stored password hash that is not a PHC string this layer can verify (or asks for more
    /// memory or time than `PasswordParameters.verifiable` allows).
    case badPasswordHash(reason: String)
    /// libargon2 failed (its error code and message).
    case hashing(code: Int32, message: String)
    /// A stored user record of `subject` that does not decode; nothing was changed.
    case badUserRecord(subject: String, reason: String)
    /// The cluster secret that subject ids are derived from is missing or too short.
    case badSecret(reason: String)
    /// A refresh token that is unknown here, expired, or of a revoked family.
    case invalidRefreshToken
    /// A refresh token used a second time: its whole family is revoked now.
    case refreshTokenReused
    /// A verified subject whose home is `home` asked for data here (a host or partition of
    /// `here`): it is served only in its home region.
    case misdirected(home: String, here: String)
    /// A signing key, stored or published, that cannot be used.
    case badKey(kid: String, reason: String)
    /// An access token that does not verify, and why (spec/auth.md#verification).
    case tokenRejected(TokenRejection)
    case residency(ResidencyError)
    case engine(PartitionDBError)

    /// A short stable code for scripts and the HTTP API's error bodies.
    public var code: String {
        switch self {
        case .invalidLogin: return "invalid_login"
        case .invalidPassword: return "invalid_password"
        case .invalidCountry: return "invalid_country"
        case .invalidCredentials: return "invalid_credentials"
        case .tooManyAttempts: return "too_many_attempts"
        case .accountDisabled: return "account_disabled"
        case .busy: return "busy"
        case .badPasswordHash: return "bad_password_hash"
        case .hashing: return "hashing_failed"
        case .badUserRecord: return "bad_user_record"
        case .badSecret: return "bad_secret"
        case .invalidRefreshToken: return "invalid_refresh_token"
        case .refreshTokenReused: return "refresh_token_reused"
        case .misdirected: return "misdirected"
        case .badKey: return "bad_key"
        case .tokenRejected: return "token_rejected"
        case .residency(let error): return error.code
        case .engine(let error): return error.code
        }
    }

    public var description: String {
        switch self {
        case .invalidLogin(let reason):
            return "the login is not a valid e-mail address: \(reason)"
        case .invalidPassword(let reason):
            return "the password is not allowed: \(reason)"
        case .invalidCountry(let text):
            return
                "\(Quoting.name(text)) is not an ISO 3166-1 alpha-2 country code (such as DE) or a subdivision of one (such as US-CA)"
        case .invalidCredentials:
            return "the login or the password is wrong"
        case .tooManyAttempts(let seconds):
            return "too many failed logins; try again in \(seconds) s"
        case .accountDisabled:
            return "the account is disabled"
        case .busy(let queued):
            return "the host is busy hashing passwords (\(queued) waiting); try again later"
        case .badPasswordHash(let reason):
            return "the stored password hash cannot be verified: \(reason)"
        case .hashing(let code, let message):
            return "libargon2 failed (\(code)): \(message)"
        case .badUserRecord(let subject, let reason):
            return
                "the user record of subject \(Quoting.name(subject)) is damaged (\(reason)); run `pdb check` on the region's partition"
        case .badSecret(let reason):
            return "the cluster's subject secret cannot be used: \(reason)"
        case .invalidRefreshToken:
            return "the refresh token is not valid; log in again"
        case .refreshTokenReused:
            return "the refresh token was used before; every token of its login is revoked; log in again"
        case .misdirected(let home, let here):
            return
                "the subject's data lives in region \(Quoting.name(home)), not in \(Quoting.name(here)); send the request to a host of \(Quoting.name(home))"
        case .badKey(let kid, let reason):
            return "signing key \(Quoting.name(kid)) cannot be used: \(reason)"
        case .tokenRejected(let rejection):
            return "the access token is rejected: \(rejection)"
        case .residency(let error):
            return error.description
        case .engine(let error):
            return error.description
        }
    }
}
