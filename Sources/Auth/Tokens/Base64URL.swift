import Foundation

/// Base64url without padding (RFC 7515 section 2), as JWTs and JWKs write bytes.
enum Base64URL {
    static func encode(_ bytes: ArraySlice<UInt8>) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// The bytes of `text`, or nil unless it is unpadded base64url (a straight loop over the
    /// UTF-8: every token verification decodes three of these).
    static func decode(_ text: some StringProtocol) -> [UInt8]? {
        let count = text.utf8.count
        guard count % 4 != 1 else { return nil }
        var result: [UInt8] = []
        result.reserveCapacity(count * 3 / 4)
        var buffer: UInt32 = 0
        var bits = 0
        for byte in text.utf8 {
            let value = Self.values[Int(byte)]
            guard value != 0xFF else { return nil }
            buffer = buffer << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                result.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
            }
        }
        // The bits left over must be zero (RFC 4648 section 3.5: canonical encoding).
        guard buffer & ((1 << UInt32(bits)) - 1) == 0 else { return nil }
        return result
    }

    /// Each byte's 6-bit value, 0xFF for a byte outside the alphabet.
    private static let values: [UInt8] = (0..<256).map { byte in
        switch UInt8(byte) {
        case 0x41...0x5A: return UInt8(byte - 0x41)
        case 0x61...0x7A: return UInt8(byte - 0x61 + 26)
        case 0x30...0x39: return UInt8(byte - 0x30 + 52)
        case 0x2D: return 62
        case 0x5F: return 63
        default: return 0xFF
        }
    }

    static func isAlphabet(_ byte: UInt8) -> Bool {
        (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39)
            || byte == 0x2D || byte == 0x5F
    }
}
