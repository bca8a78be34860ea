import PartitionDB

/// A strict reader of one JSON object (RFC 8259), for `pdb apply`'s input lines.
///
/// Foundation's `JSONDecoder` takes the last of two members with the same name and repairs
/// bytes that are not UTF-8; either silently changes what a line means (`"key":"a","key":"b"`
/// writes `b`). This reader refuses instead: input bytes must be valid UTF-8 (outside strings,
/// only JSON's ASCII), a member name may appear once in each object, escapes are RFC 8259's
/// (`\uXXXX` surrogates must come as a high-low pair), raw control characters in strings and
/// text after the object are refused. Values other than strings (numbers, literals, arrays,
/// objects) are checked by the same grammar, so that an unknown member is skipped only when it
/// is valid JSON. Rules: spec/cli.md#input
struct StrictJSON {
    /// A member's value, as far as apply cares: a string, null, or something else.
    enum Value: Equatable {
        case string(String)
        case null
        /// Any other JSON value; the payload names its kind (`a number`, `an object`, ...).
        case other(String)
    }

    struct Member {
        var name: String
        var value: Value
    }

    /// Why the line is not a strict JSON object; `message` says what and at which column.
    struct Failure: Error {
        var message: String
    }

    /// How deep arrays and objects may nest inside an unknown member: deeper is refused rather
    /// than risking the stack on a hostile line.
    static let maxDepth = 64

    /// The members of the object that is the whole of `bytes` (whitespace around it aside), in
    /// order.
    static func object(_ bytes: [UInt8]) throws(Failure) -> [Member] {
        var reader = StrictJSON(bytes: bytes)
        reader.skipWhitespace()
        guard reader.peek == UInt8(ascii: "{") else { throw Failure(message: "not a JSON object") }
        let members = try reader.members(depth: 0)
        reader.skipWhitespace()
        guard reader.index == bytes.count else { throw reader.failure("text after the object") }
        return members
    }

    private let bytes: [UInt8]
    private var index = 0

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

    private func failure(_ what: String) -> Failure {
        Failure(message: "not a JSON object: \(what) at column \(index + 1)")
    }

    private mutating func skipWhitespace() {
        while let byte = peek, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
    }

    private mutating func expect(_ byte: UInt8, _ what: String) throws(Failure) {
        guard peek == byte else { throw failure("expected \(what)") }
        index += 1
    }

    /// An object, from its `{`; refuses a name that appears twice (compared byte for byte).
    private mutating func members(depth: Int) throws(Failure) -> [Member] {
        guard depth < StrictJSON.maxDepth else { throw failure("nested deeper than \(StrictJSON.maxDepth) levels") }
        try expect(UInt8(ascii: "{"), "{")
        var members: [Member] = []
        var names: Set<[UInt8]> = []
        skipWhitespace()
        if peek == UInt8(ascii: "}") {
            index += 1
            return members
        }
        while true {
            skipWhitespace()
            let start = index
            guard peek == UInt8(ascii: "\"") else { throw failure("expected a member name in quotes") }
            let name = try string()
            guard names.insert(Array(name.utf8)).inserted else {
                index = start
                throw Failure(
                    message: "member \(Quoting.name(name)) appears twice at column \(start + 1); give each field once")
            }
            skipWhitespace()
            try expect(UInt8(ascii: ":"), ": after a member name")
            skipWhitespace()
            members.append(Member(name: name, value: try value(depth: depth)))
            skipWhitespace()
            switch peek {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                return members
            default: throw failure("expected , or }")
            }
        }
    }

    private mutating func value(depth: Int) throws(Failure) -> Value {
        switch peek {
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "{"):
            _ = try members(depth: depth + 1)
            return .other("an object")
        case UInt8(ascii: "["):
            try array(depth: depth + 1)
            return .other("an array")
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        case UInt8(ascii: "t"):
            try literal("true")
            return .other("true or false")
        case UInt8(ascii: "f"):
            try literal("false")
            return .other("true or false")
        case let byte? where byte == UInt8(ascii: "-") || (byte >= 0x30 && byte <= 0x39):
            try number()
            return .other("a number")
        default:
            throw failure("expected a value")
        }
    }

    private mutating func array(depth: Int) throws(Failure) {
        guard depth < StrictJSON.maxDepth else { throw failure("nested deeper than \(StrictJSON.maxDepth) levels") }
        try expect(UInt8(ascii: "["), "[")
        skipWhitespace()
        if peek == UInt8(ascii: "]") {
            index += 1
            return
        }
        while true {
            skipWhitespace()
            _ = try value(depth: depth)
            skipWhitespace()
            switch peek {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                return
            default: throw failure("expected , or ]")
            }
        }
    }

    private mutating func literal(_ word: StaticString) throws(Failure) {
        let expected = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
        for byte in expected {
            guard peek == byte else { throw failure("expected \(word)") }
            index += 1
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    private mutating func number() throws(Failure) {
        func isDigit(_ byte: UInt8?) -> Bool { byte.map { $0 >= 0x30 && $0 <= 0x39 } ?? false }
        if peek == UInt8(ascii: "-") { index += 1 }
        if peek == UInt8(ascii: "0") {
            index += 1
        } else {
            guard isDigit(peek) else { throw failure("expected a digit") }
            while isDigit(peek) { index += 1 }
        }
        if peek == UInt8(ascii: ".") {
            index += 1
            guard isDigit(peek) else { throw failure("expected a digit after .") }
            while isDigit(peek) { index += 1 }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            index += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
            guard isDigit(peek) else { throw failure("expected a digit in the exponent") }
            while isDigit(peek) { index += 1 }
        }
    }

    /// A string, from its opening quote: escapes decoded, raw bytes validated as UTF-8.
    private mutating func string() throws(Failure) -> String {
        index += 1  // The opening quote.
        var text: [UInt8] = []
        while true {
            guard let byte = peek else { throw failure("unterminated string") }
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                // Every byte appended is valid UTF-8 by construction.
                return String(decoding: text, as: UTF8.self)
            case UInt8(ascii: "\\"):
                try escape(into: &text)
            case 0..<0x20:
                throw failure("a raw control character in a string (write it as \\u00XX)")
            case 0..<0x80:
                text.append(byte)
                index += 1
            default:
                try utf8Sequence(into: &text)
            }
        }
    }

    private mutating func escape(into text: inout [UInt8]) throws(Failure) {
        index += 1  // The backslash.
        guard let byte = peek else { throw failure("unterminated string") }
        index += 1
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): text.append(byte)
        case UInt8(ascii: "b"): text.append(0x08)
        case UInt8(ascii: "f"): text.append(0x0C)
        case UInt8(ascii: "n"): text.append(0x0A)
        case UInt8(ascii: "r"): text.append(0x0D)
        case UInt8(ascii: "t"): text.append(0x09)
        case UInt8(ascii: "u"):
            let start = index - 2
            var code = try hex4()
            if code >= 0xDC00 && code <= 0xDFFF {
                index = start
                throw failure("a lone low surrogate \\u\(String(code, radix: 16, uppercase: true))")
            }
            if code >= 0xD800 && code <= 0xDBFF {
                let low: UInt32?
                if index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") {
                    index += 2
                    low = try hex4()
                } else {
                    low = nil
                }
                guard let low, low >= 0xDC00 && low <= 0xDFFF else {
                    index = start
                    throw failure(
                        "a lone high surrogate \\u\(String(code, radix: 16, uppercase: true)) (it must be followed by a low one)"
                    )
                }
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
            }
            // Not a surrogate, so a valid scalar.
            text.append(contentsOf: String(Unicode.Scalar(code)!).utf8)
        default:
            index -= 2
            throw failure("an unknown escape")
        }
    }

    private mutating func hex4() throws(Failure) -> UInt32 {
        var code: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = peek else { throw failure("expected 4 hex digits after \\u") }
            let digit: UInt8
            switch byte {
            case 0x30...0x39: digit = byte - 0x30
            case 0x41...0x46: digit = byte - 0x41 + 10
            case 0x61...0x66: digit = byte - 0x61 + 10
            default: throw failure("expected 4 hex digits after \\u")
            }
            code = code << 4 | UInt32(digit)
            index += 1
        }
        return code
    }

    /// One multi-byte UTF-8 sequence, from its lead byte: refuses overlong forms, surrogates and
    /// code points past U+10FFFF, as the Unicode standard's table 3-7 does.
    private mutating func utf8Sequence(into text: inout [UInt8]) throws(Failure) {
        let lead = bytes[index]
        let count: Int
        var range: ClosedRange<UInt8> = 0x80...0xBF  // The second byte's range.
        switch lead {
        case 0xC2...0xDF: count = 2
        case 0xE0:
            count = 3
            range = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: count = 3
        case 0xED:
            count = 3
            range = 0x80...0x9F
        case 0xF0:
            count = 4
            range = 0x90...0xBF
        case 0xF1...0xF3: count = 4
        case 0xF4:
            count = 4
            range = 0x80...0x8F
        default: throw invalidUTF8()
        }
        guard index + count <= bytes.count, range.contains(bytes[index + 1]) else { throw invalidUTF8() }
        for offset in 2..<max(count, 2) where !(0x80...0xBF).contains(bytes[index + offset]) {
            throw invalidUTF8()
        }
        text.append(contentsOf: bytes[index..<index + count])
        index += count
    }

    private func invalidUTF8() -> Failure {
        Failure(
            message: "not valid UTF-8 at column \(index + 1); give bytes that are not UTF-8 in base64, "
                + "under key_b64 or value_b64")
    }
}
