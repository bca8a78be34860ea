import PartitionDB
import Residency

/// What sign-up knows when it asks for a home region.
public struct SignUpRequest: Sendable {
    public let login: LoginIdentifier
    public let subject: SubjectID
    public let country: CountryCode
    /// The caller's network address, when the transport knows it.
    public let clientAddress: String?
}

/// Picks a new user's home region: the pre-sign-up trigger of the reference architecture. An
/// application replaces it to decide otherwise (a contract's region, a test region), or throws
/// to refuse a sign-up.
public protocol PreSignUpHook: Sendable {
    func homeRegion(for request: SignUpRequest) async throws -> Region
}

/// The default pre-sign-up hook: the country-to-region policy.
public struct CountryPolicySignUpHook: PreSignUpHook {
    public let policy: CountryRegionPolicy
    public init(policy: CountryRegionPolicy) { self.policy = policy }
    public func homeRegion(for request: SignUpRequest) async throws -> Region { policy.region(for: request.country) }
}

/// What login knows before it checks a password.
public struct LoginRequest: Sendable {
    public let login: LoginIdentifier
    public let subject: SubjectID
    public let clientAddress: String?
}

public enum PreAuthenticationDecision: Sendable, Equatable {
    /// Check the password here.
    case proceed
    /// The user lives in another region: send the caller there; no password is checked here.
    case redirect(Region)
}

/// Runs before a password is checked: the pre-authentication trigger. The default looks the
/// subject up in the residency directory; an application may add rules (or throw to refuse).
public protocol PreAuthenticationHook: Sendable {
    func check(_ request: LoginRequest) async throws -> PreAuthenticationDecision
}

/// The default pre-authentication hook: a subject whose home in the directory is another region
/// is redirected there; one with this region's home, or none (an unknown login, answered as a
/// wrong password would be), proceeds.
public struct DirectoryPreAuthenticationHook: PreAuthenticationHook {
    public let directory: any HomeRegionResolver
    public let region: Region

    public init(directory: any HomeRegionResolver, region: Region) {
        self.directory = directory
        self.region = region
    }

    public func check(_ request: LoginRequest) async throws -> PreAuthenticationDecision {
        guard let home = try wrapping({ try directory.homeRegion(of: request.subject) }), home != region else {
            return .proceed
        }
        return .redirect(home)
    }
}
