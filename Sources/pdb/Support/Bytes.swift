import Foundation

/// Keys and values are bytes; the command line shows them as text when they are UTF-8 and as
/// base64 otherwise.
enum Bytes {
    /// The bytes as a string, when they are valid UTF-8.
    static func text(_ bytes: [UInt8]) -> String? {
        String(validating: bytes, as: UTF8.self)
    }

    static func base64(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
    }

    /// Decodes standard (padded) base64; nil when `text` is not base64.
    ///
    /// Only the one canonical encoding of the bytes is taken: Foundation's decoder accepts
    /// `====` as the byte 0 and `QR==` as `A` (nonzero padding bits), so two different
    /// arguments would name one key. Re-encoding the result must give `text` back.
    static func fromBase64(_ text: String) -> [UInt8]? {
        Data(base64Encoded: text).flatMap { $0.base64EncodedString() == text ? [UInt8]($0) : nil }
    }

    /// The bytes of a command-line argument: UTF-8, or base64 when `base64` is set.
    static func argument(_ text: String, base64: Bool) -> [UInt8]? {
        base64 ? fromBase64(text) : Array(text.utf8)
    }

    /// One line's worth of text for a terminal: the UTF-8 text when it has no control
    /// characters, else `b64:` and the base64.
    static func display(_ bytes: [UInt8]) -> String {
        if let text = text(bytes), !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            return text
        }
        return "b64:" + base64(bytes)
    }
}
