/// Argon2id's cost parameters. Each stored hash carries its own (spec/auth.md#password-hashes),
/// so they can change without invalidating any; a login with old ones rehashes.
public struct PasswordParameters: Sendable, Equatable, CustomStringConvertible {
    /// Memory in KiB (Argon2's `m`).
    public var memoryKiB: UInt32
    /// Passes over the memory (`t`).
    public var iterations: UInt32
    /// Lanes (`p`).
    public var parallelism: UInt32

    /// OWASP's recommendation for Argon2id: m = 19 MiB, t = 2, p = 1.
    public static let owasp = PasswordParameters(memoryKiB: 19 * 1024, iterations: 2, parallelism: 1)

    /// The most a stored hash may ask of the verifier: a damaged or planted record with
    /// m = 4 GiB would otherwise allocate it at the next login.
    public static let verifiable = PasswordParameters(memoryKiB: 1 << 20, iterations: 16, parallelism: 8)

    public init(memoryKiB: UInt32, iterations: UInt32, parallelism: UInt32) {
        self.memoryKiB = memoryKiB
        self.iterations = iterations
        self.parallelism = parallelism
    }

    /// Throws unless Argon2 accepts these and they are within `verifiable`.
    public func check() throws {
        let limit = Self.verifiable
        guard (1...limit.parallelism).contains(parallelism) else {
            throw AuthError.badPasswordHash(reason: "p = \(parallelism) is outside 1...\(limit.parallelism)")
        }
        guard (8 * parallelism...limit.memoryKiB).contains(memoryKiB) else {
            throw AuthError.badPasswordHash(
                reason:
                    "m = \(memoryKiB) KiB is outside \(8 * parallelism)...\(limit.memoryKiB) (8 KiB per lane, at most 1 GiB)"
            )
        }
        guard (1...limit.iterations).contains(iterations) else {
            throw AuthError.badPasswordHash(reason: "t = \(iterations) is outside 1...\(limit.iterations)")
        }
    }

    public var description: String { "m=\(memoryKiB),t=\(iterations),p=\(parallelism)" }
}

/// The password rules, checked before any hashing: 8 to 1,024 bytes of UTF-8 (NIST SP 800-63B's
/// minimum; the maximum bounds the work a request can ask for).
public enum PasswordRules {
    public static let minimumBytes = 8
    public static let maximumBytes = 1024

    public static func check(_ password: String) throws {
        let size = password.utf8.count
        guard size >= minimumBytes else {
            throw AuthError.invalidPassword(reason: "it has \(size) bytes; it needs at least \(minimumBytes)")
        }
        guard size <= maximumBytes else {
            throw AuthError.invalidPassword(reason: "it has \(size) bytes; at most \(maximumBytes) are allowed")
        }
    }
}
