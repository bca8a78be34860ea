import Foundation
import PartitionDB
import Residency

/// What a sign-up answers. A login that exists gets exactly what a new one would, so the answer
/// never tells a caller whether an account exists (spec/auth.md#answers).
public enum SignUpOutcome: Sendable, Equatable {
    /// The user is registered in this host's region, `region`.
    case registered(subject: SubjectID, region: Region)
    /// The user's home region is another one: sign up there. Nothing was written here.
    case redirect(region: Region)
}

/// What a login answers when it does not throw.
public enum LoginOutcome: Sendable, Equatable {
    /// The password is right; the subject lives in this host's region.
    case authenticated(subject: SubjectID, region: Region)
    /// The user lives in another region: log in there. No password was checked here.
    case redirect(region: Region)
}

/// Sign-up and login on one host of one region (spec/auth.md#flows): the library API the HTTP
/// layer serves. Homes are assigned through `homes` (the directory, forwarded to its primary on
/// a replica host), users kept in `users`, a partition of this region; nothing personal is
/// written for a user of another region, or anywhere outside this region.
public final class Authenticator: Sendable {
    public let region: Region
    private let subjects: SubjectKey
    private let hasher: PasswordHasher
    private let homes: any HomeAssigning
    private let users: any UserStore
    private let preSignUp: any PreSignUpHook
    private let preAuthentication: any PreAuthenticationHook
    private let limiter: AttemptLimiter
    private let now: @Sendable () -> Date

    /// How many times a counter update is retried when another request changed the record.
    static let updateAttempts = 8

    public init(
        region: Region, subjects: SubjectKey, hasher: PasswordHasher, homes: any HomeAssigning,
        users: any UserStore, preSignUp: any PreSignUpHook, preAuthentication: any PreAuthenticationHook,
        limits: AttemptLimits = .cognito, now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.region = region
        self.subjects = subjects
        self.hasher = hasher
        self.homes = homes
        self.users = users
        self.preSignUp = preSignUp
        self.preAuthentication = preAuthentication
        limiter = AttemptLimiter(limits: limits)
        self.now = now
    }

    public var limits: AttemptLimits { limiter.limits }

    /// The subject id of `login` (after normalizing it).
    public func subject(of login: String) throws -> SubjectID { subjects.subject(of: try LoginIdentifier(login)) }

    /// Registers a user: checks the input, asks the pre-sign-up hook for the home region,
    /// redirects when that is not this region (writing nothing), hashes the password, assigns
    /// the home (a conditional create: one winner among concurrent sign-ups anywhere), then
    /// stores the user. A login that exists, here or in another region, is answered as a new
    /// one would be and writes nothing.
    public func signUp(login text: String, password: String, country: String, clientAddress: String? = nil)
        async throws -> SignUpOutcome
    {
        let login = try LoginIdentifier(text)
        try PasswordRules.check(password)
        guard let country = CountryCode(country) else { throw AuthError.invalidCountry(country) }
        let subject = subjects.subject(of: login)
        let home = try await preSignUp.homeRegion(
            for: SignUpRequest(login: login, subject: subject, country: country, clientAddress: clientAddress))
        guard home == region else { return .redirect(region: home) }
        // Hashed before anything is looked up, so that a login that exists takes as long.
        let hash = try await hasher.hash(password)
        let answer = SignUpOutcome.registered(subject: subject, region: region)
        do {
            _ = try await homes.assignHome(subject, to: region)
        } catch ResidencyError.alreadyRegistered {
            // Another region's user (or a concurrent sign-up elsewhere that won): nothing here.
            return answer
        } catch let error as ResidencyError {
            throw AuthError.residency(error)
        }
        let record = UserRecord(login: login, passwordHash: hash, createdAt: now())
        _ = try await users.create(record, for: subject)
        return answer
    }

    /// Checks a login: the client address's and the subject's lockouts, the pre-authentication
    /// hook (a user of another region is redirected), then the password. Every refusal takes
    /// the time of one password verification, whether the login exists or not, and answers
    /// alike: `invalidCredentials` for a wrong login or password, `tooManyAttempts` during a
    /// lockout. A success resets the subject's failures and rehashes a password whose hash has
    /// old parameters.
    public func login(login text: String, password: String, clientAddress: String? = nil) async throws
        -> LoginOutcome
    {
        let login = try LoginIdentifier(text)
        try PasswordRules.check(password)
        let started = now()
        let addressKey = clientAddress.map { "address \($0)" }
        if let addressKey, let wait = limiter.retryAfter(addressKey, now: started) {
            try await hasher.verifyNothing()
            throw AuthError.tooManyAttempts(retryAfterSeconds: wait)
        }
        let subject = subjects.subject(of: login)
        let request = LoginRequest(login: login, subject: subject, clientAddress: clientAddress)
        if case .redirect(let home) = try await preAuthentication.check(request) { return .redirect(region: home) }

        guard let record = try await users.user(subject), record.login == login.normalized else {
            // No such user here: the same time, answers and lockouts as a real one.
            let subjectKey = "subject \(subject.rawValue)"
            if let wait = limiter.retryAfter(subjectKey, now: started) {
                try await hasher.verifyNothing()
                throw AuthError.tooManyAttempts(retryAfterSeconds: wait)
            }
            try await hasher.verifyNothing()
            limiter.recordFailure(subjectKey, now: now())
            if let addressKey { limiter.recordFailure(addressKey, now: now()) }
            throw AuthError.invalidCredentials
        }
        let startedMilliseconds = Self.milliseconds(started)
        if record.lockedUntilMilliseconds > startedMilliseconds {
            try await hasher.verifyNothing()
            let wait = (record.lockedUntilMilliseconds - startedMilliseconds + 999) / 1000
            throw AuthError.tooManyAttempts(retryAfterSeconds: Int(wait))
        }
        let hash = try PasswordHash(phc: record.passwordHash)
        guard try await hasher.verify(password, against: hash) else {
            try await recordFailure(of: subject)
            if let addressKey { limiter.recordFailure(addressKey, now: now()) }
            throw AuthError.invalidCredentials
        }
        guard record.status == .active else { throw AuthError.accountDisabled }
        if record.failedAttempts != 0 || record.lockedUntilMilliseconds != 0 || hasher.needsRehash(hash) {
            var updated = record
            updated.failedAttempts = 0
            updated.lockedUntilMilliseconds = 0
            if hasher.needsRehash(hash) { updated.passwordHash = try await hasher.hash(password).phc }
            // A concurrent change (another login's failure) wins; this success stands either way.
            _ = try await users.replace(subject, expected: record, with: updated)
        }
        return .authenticated(subject: subject, region: region)
    }

    /// Counts one failed login in the subject's record and locks it out per `limits`, retrying
    /// when a concurrent login changed the record in between.
    private func recordFailure(of subject: SubjectID) async throws {
        for _ in 0..<Self.updateAttempts {
            guard let current = try await users.user(subject) else { return }
            var updated = current
            updated.failedAttempts += 1
            let lockout = limiter.limits.lockout(afterFailures: updated.failedAttempts)
            updated.lockedUntilMilliseconds = lockout > 0 ? Self.milliseconds(now().addingTimeInterval(lockout)) : 0
            if try await users.replace(subject, expected: current, with: updated) { return }
        }
    }

    private static func milliseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
    }
}
