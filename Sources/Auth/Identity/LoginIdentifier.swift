import Foundation

/// A login identifier (an e-mail address) in its one normalized form, the form subject ids are
/// derived from and user records keep (spec/auth.md#login-identifiers): surrounding white space
/// trimmed, Unicode NFC, the domain lower-cased, the local part kept as typed (RFC 5321 leaves
/// its case to the receiving host), so `  Ana@Example.COM ` and `Ana@example.com` are one
/// login and `ana@example.com` another.
public struct LoginIdentifier: Hashable, Sendable, CustomStringConvertible {
    public let normalized: String

    /// RFC 5321's limits: 64 bytes of local part, 255 of domain, 254 for the whole address.
    public static let maxLocalBytes = 64
    public static let maxDomainBytes = 255
    public static let maxBytes = 254
    /// Input longer than this is refused before any work on it.
    public static let maxInputBytes = 1024

    public init(_ text: String) throws {
        guard text.utf8.count <= Self.maxInputBytes else {
            throw AuthError.invalidLogin(reason: "longer than \(Self.maxInputBytes) bytes")
        }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines).precomposedStringWithCanonicalMapping
        guard !trimmed.isEmpty else { throw AuthError.invalidLogin(reason: "it is empty") }
        for scalar in trimmed.unicodeScalars {
            switch scalar.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator, .spaceSeparator, .surrogate,
                .privateUse, .unassigned:
                throw AuthError.invalidLogin(reason: "it holds a space, control or unassigned character")
            default: continue
            }
        }
        let parts = trimmed.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw AuthError.invalidLogin(reason: "it must hold exactly one @") }
        let local = String(parts[0])
        let domain = String(parts[1]).lowercased().precomposedStringWithCanonicalMapping
        guard !local.isEmpty, local.utf8.count <= Self.maxLocalBytes else {
            throw AuthError.invalidLogin(reason: "the part before @ must be 1 to \(Self.maxLocalBytes) bytes")
        }
        guard !domain.isEmpty, domain.utf8.count <= Self.maxDomainBytes else {
            throw AuthError.invalidLogin(reason: "the domain must be 1 to \(Self.maxDomainBytes) bytes")
        }
        guard !domain.hasPrefix("."), !domain.hasSuffix("."), !domain.contains("..") else {
            throw AuthError.invalidLogin(reason: "the domain has an empty label")
        }
        let normalized = local + "@" + domain
        guard normalized.utf8.count <= Self.maxBytes else {
            throw AuthError.invalidLogin(reason: "longer than \(Self.maxBytes) bytes")
        }
        self.normalized = normalized
    }

    public var description: String { normalized }
}
