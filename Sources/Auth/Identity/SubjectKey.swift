import Crypto
import Foundation
import PartitionDB

/// The cluster secret subject ids are derived from: a subject id is HMAC-SHA256 of the normalized
/// login under this key (spec/auth.md#subject-ids), so the directory holds no e-mail and no one
/// without the key can tell whose id is whose, or guess ids from a list of e-mails. Every host
/// of every region must have the same key. It is never logged or printed; rotating it is out of
/// scope (every subject id would change).
public struct SubjectKey: Sendable, CustomStringConvertible {
    private let key: SymmetricKey
    /// HMAC-SHA256 wants a key of at least its output size.
    public static let minimumBytes = 32
    /// What the HMAC input starts with, so the key is never used for another purpose's MAC.
    static let context = Array("pdb subject id v1\u{0}".utf8)

    public init(bytes: [UInt8]) throws {
        guard bytes.count >= Self.minimumBytes else {
            throw AuthError.badSecret(reason: "it has \(bytes.count) bytes; it needs at least \(Self.minimumBytes)")
        }
        key = SymmetricKey(data: bytes)
    }

    /// Reads the key from `file`: its bytes, with one trailing newline dropped.
    public init(file: String) throws {
        guard var data = FileManager.default.contents(atPath: file).map(Array.init) else {
            throw AuthError.badSecret(reason: "\(Quoting.path(file)) cannot be read")
        }
        if data.last == 0x0A { data.removeLast() }
        try self.init(bytes: data)
    }

    /// A new random key of 32 bytes, as `pdb cluster init` writes it.
    public static func random() -> [UInt8] {
        SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
    }

    /// The subject id of `login`: 64 lower-case hex digits.
    public func subject(of login: LoginIdentifier) -> SubjectID {
        var mac = HMAC<SHA256>(key: key)
        mac.update(data: Self.context)
        mac.update(data: Array(login.normalized.utf8))
        let hex = mac.finalize().map { byte in
            let digits = Array("0123456789abcdef".utf8)
            return String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]], as: UTF8.self)
        }
        // 64 ASCII bytes: always a valid subject id.
        return try! SubjectID(hex.joined())
    }

    public var description: String { "SubjectKey(redacted)" }
}
