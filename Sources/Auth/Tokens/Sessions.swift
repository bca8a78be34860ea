import PartitionDB

/// What a login or a refresh answers: OAuth 2.0's token response (RFC 6749 section 5.1).
public struct Session: Sendable, Equatable {
    public let accessToken: String
    public let tokenType = "Bearer"
    /// Seconds until the access token expires.
    public let expiresIn: Int
    public let refreshToken: String
    public let subject: SubjectID
}

/// Sessions on a host of the subjects' home region: an access token and a refresh token at
/// login, a new pair at each refresh (the old refresh token spent), and logout.
public final class Sessions: Sendable {
    private let issuer: TokenIssuer
    private let refreshTokens: RefreshTokens
    private let users: any UserStore

    public init(issuer: TokenIssuer, refreshTokens: RefreshTokens, users: any UserStore) {
        self.issuer = issuer
        self.refreshTokens = refreshTokens
        self.users = users
    }

    /// A new session for `subject`, after `Authenticator.login` answered `authenticated`.
    public func start(for subject: SubjectID) async throws -> Session {
        let refresh = try await refreshTokens.issue(for: subject)
        return try await session(subject, refresh: refresh)
    }

    /// Spends `refreshToken` for a new pair. A user who is gone or disabled gets
    /// `invalidRefreshToken`, and the family is revoked.
    public func refresh(_ refreshToken: String) async throws -> Session {
        let (subject, next) = try await refreshTokens.rotate(refreshToken)
        guard let user = try await users.user(subject), user.status == .active else {
            try await refreshTokens.revokeFamily(of: next)
            throw AuthError.invalidRefreshToken
        }
        return try await session(subject, refresh: next)
    }

    /// Logout: revokes every refresh token of the session's family. Access tokens already
    /// issued stay valid until they expire (at most the access lifetime).
    public func end(_ refreshToken: String) async throws {
        guard try await refreshTokens.revokeFamily(of: refreshToken) else { throw AuthError.invalidRefreshToken }
    }

    private func session(_ subject: SubjectID, refresh: String) async throws -> Session {
        let access = try await issuer.accessToken(for: subject)
        return Session(accessToken: access.token, expiresIn: access.expiresIn, refreshToken: refresh, subject: subject)
    }
}
