import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Buffered writes to stdout and stderr. All output goes through here, so lines never interleave
/// out of order, and `flush()` runs before the process exits.
///
/// A write to stdout that fails (a full disk, a pipe whose reader has gone) throws
/// `OutputFailure`, and every later write throws it again without writing: a command stops at
/// the first output it could not deliver, rather than going on as if it had been read
/// (spec/cli.md#errors-and-exit-codes). SIGPIPE is ignored by `PDB.main`, so a closed pipe
/// reaches this code as EPIPE instead of killing the process silently.
///
/// On a running host (`pdb serve`) a command's output is captured instead (`capturing`), and sent
/// back to the operator's `pdb`, which prints it: the same bytes as the command would print here.
final class Output: @unchecked Sendable {
    /// The process's stdout and stderr.
    static let standard = Output(capturing: false)
    /// The output of the command running on this thread: captured on a host, else standard.
    static var shared: Output { capturing ?? standard }
    @TaskLocal static var capturing: Output?

    /// Whether this output is kept in memory (`capturedStdout`, `capturedStderr`).
    let isCapture: Bool
    private var stdoutBytes: [UInt8] = []
    private var stderrBytes: [UInt8] = []

    init(capturing: Bool) { isCapture = capturing }

    /// What a capture holds, stdout flushed.
    var captured: (stdout: [UInt8], stderr: [UInt8]) {
        try? flush()
        return lock.withLock { (stdoutBytes, stderrBytes) }
    }

    /// Protects `buffer` and `failure`.
    private let lock = NSLock()
    private var buffer: [UInt8] = []
    /// The first failed write to stdout; once set, nothing more is written there.
    private var failure: OutputFailure?
    private static let flushThreshold = 64 << 10

    private let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// Writes `text` and a newline to stdout.
    func line(_ text: String) throws {
        let full: Bool = try lock.withLock {
            if let failure { throw failure }
            buffer.append(contentsOf: text.utf8)
            buffer.append(0x0A)
            return buffer.count >= Output.flushThreshold
        }
        if full { try flush() }
    }

    /// Writes `value` as one line of JSON (keys sorted) to stdout.
    func json<T: Encodable>(_ value: T) throws {
        // Encoding our own plain structs cannot fail; a failure is a bug in this file.
        let data = try! encoder.encode(value)
        try line(String(decoding: data, as: UTF8.self))
    }

    /// Writes buffered stdout bytes to file descriptor 1; throws (now and at every later call)
    /// when the write fails.
    func flush() throws {
        try lock.withLock {
            if let failure { throw failure }
            let data = buffer
            buffer = []
            if isCapture {
                stdoutBytes += data
                return
            }
            var written = 0
            while written < data.count {
                let n = data.withUnsafeBytes { write(1, $0.baseAddress! + written, $0.count - written) }
                if n < 0 {
                    if errno == EINTR { continue }
                    let failure = OutputFailure(errno: errno)
                    self.failure = failure
                    throw failure
                }
                written += n
            }
        }
    }

    /// Whether a write to stdout has failed.
    var failed: Bool { lock.withLock { failure != nil } }

    /// Writes `text` and a newline to stderr, after flushing stdout. Best effort: when stderr is
    /// gone too there is nobody left to tell.
    func note(_ text: String) {
        try? flush()
        let bytes = Array((text + "\n").utf8)
        if isCapture {
            lock.withLock { stderrBytes += bytes }
            return
        }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(2, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            written += n
        }
    }
}

/// A write to standard output failed; the command stops, reports it on stderr and exits 1.
struct OutputFailure: Error, CustomStringConvertible {
    var errno: Int32

    var description: String {
        "cannot write to standard output: \(String(cString: strerror(errno))) (errno \(errno)); "
            + "the output is incomplete and the command stopped there"
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
