import Foundation

/// Buffered writes to stdout and stderr. All output goes through here, so lines never interleave
/// out of order, and `flush()` runs before the process exits.
final class Output: @unchecked Sendable {
    static let shared = Output()

    /// Protects `buffer`.
    private let lock = NSLock()
    private var buffer = Data()
    private static let flushThreshold = 64 << 10

    private let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// Writes `text` and a newline to stdout.
    func line(_ text: String) {
        lock.lock()
        buffer.append(contentsOf: Array(text.utf8))
        buffer.append(0x0A)
        let full = buffer.count >= Output.flushThreshold
        lock.unlock()
        if full { flush() }
    }

    /// Writes `value` as one line of JSON (keys sorted) to stdout.
    func json<T: Encodable>(_ value: T) {
        // Encoding our own plain structs cannot fail; a failure is a bug in this file.
        let data = try! encoder.encode(value)
        line(String(decoding: data, as: UTF8.self))
    }

    /// Writes buffered stdout bytes to the file descriptor.
    func flush() {
        lock.lock()
        let data = buffer
        buffer = Data()
        lock.unlock()
        guard !data.isEmpty else { return }
        try? FileHandle.standardOutput.write(contentsOf: data)
    }

    /// Writes `text` and a newline to stderr, after flushing stdout.
    func note(_ text: String) {
        flush()
        try? FileHandle.standardError.write(contentsOf: Data((text + "\n").utf8))
    }
}

/// `{"error":{"code":C,"message":M}}`: how a failure prints with `--json`.
struct ErrorReport: Encodable {
    struct Body: Encodable {
        var code: String
        var message: String
    }
    var error: Body

    init(code: String, message: String) {
        error = Body(code: code, message: message)
    }
}

/// `1 record`, `2 records`: a number and its noun, for human output.
func counted(_ count: Int, _ noun: String) -> String {
    count == 1 ? "\(count) \(noun)" : "\(count) \(noun)s"
}
