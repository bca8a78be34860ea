/// A stored password hash in the PHC string format of Argon2id (spec/auth.md#password-hashes):
/// `$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`, salt and hash in unpadded standard base64.
/// Parsing checks the whole form and the parameters' limits before libargon2 sees it.
public struct PasswordHash: Sendable, Equatable, CustomStringConvertible {
    public let phc: String
    public let parameters: PasswordParameters

    public static let saltBytes = 16
    public static let hashBytes = 32
    /// A PHC string longer than this is not one this layer wrote.
    static let maxLength = 256

    public init(phc: String) throws {
        guard phc.utf8.count <= Self.maxLength else { throw AuthError.badPasswordHash(reason: "it is too long") }
        let fields = phc.split(separator: "$", omittingEmptySubsequences: false)
        guard fields.count == 6, fields[0].isEmpty else {
            throw AuthError.badPasswordHash(reason: "it is not a PHC string ($id$v=..$params$salt$hash)")
        }
        guard fields[1] == "argon2id" else {
            throw AuthError.badPasswordHash(reason: "the algorithm is \(fields[1].prefix(16)), not argon2id")
        }
        guard fields[2] == "v=19" else { throw AuthError.badPasswordHash(reason: "the version is not v=19") }
        var values: [String: UInt32] = [:]
        for pair in fields[3].split(separator: ",", omittingEmptySubsequences: false) {
            let parts = pair.split(separator: "=", omittingEmptySubsequences: false)
            guard parts.count == 2, ["m", "t", "p"].contains(parts[0]), values[String(parts[0])] == nil,
                parts[1].utf8.count <= 10, parts[1].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                let value = UInt32(parts[1])
            else { throw AuthError.badPasswordHash(reason: "the parameters are not m=..,t=..,p=..") }
            values[String(parts[0])] = value
        }
        guard let m = values["m"], let t = values["t"], let p = values["p"] else {
            throw AuthError.badPasswordHash(reason: "the parameters are not m=..,t=..,p=..")
        }
        let parameters = PasswordParameters(memoryKiB: m, iterations: t, parallelism: p)
        try parameters.check()
        guard Self.isBase64(fields[4], decodedBytes: 8...64), Self.isBase64(fields[5], decodedBytes: 16...64) else {
            throw AuthError.badPasswordHash(reason: "the salt or hash is not unpadded base64 of 8-64 and 16-64 bytes")
        }
        self.phc = phc
        self.parameters = parameters
    }

    /// Whether `text` is unpadded standard base64 of a length that decodes to `decodedBytes`.
    private static func isBase64(_ text: Substring, decodedBytes: ClosedRange<Int>) -> Bool {
        let count = text.utf8.count
        guard count % 4 != 1, decodedBytes.contains(count * 3 / 4) else { return false }
        return text.utf8.allSatisfy {
            ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2B
                || $0 == 0x2F
        }
    }

    /// The PHC string shows only the parameters (the salt and hash are secrets of a kind).
    public var description: String { "PasswordHash(argon2id, \(parameters))" }
}
