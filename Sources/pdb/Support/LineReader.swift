import PartitionDB

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The lines of stdin as raw bytes, without the blank ones, counting every line read for
/// messages; a line longer than `maxLineLength` is skipped, not kept.
///
/// `readLine` would hold a line of any length in memory (a 500 MB line took 1.5 GB before apply
/// refused it) and repairs bytes that are not UTF-8, so this reader works on descriptor 0
/// directly: it reads chunks, keeps at most `maxLineLength` bytes of a line, and counts the rest
/// of a longer one without storing it. Bytes are returned unchanged, so `StrictJSON` sees invalid
/// UTF-8 and refuses it. Limit: spec/cli.md#input
struct LineReader {
    /// One input line: its bytes (without the newline), or the length of a line that was too
    /// long to keep.
    enum Line {
        case text([UInt8])
        case tooLong(length: Int)
    }

    /// The longest table name (spec/cli.md#create-partition; the engine's `Names` is internal).
    static let maxTableLength = 63

    /// The room a value has on a line: the base64 of the largest value the engine takes. A value
    /// given as JSON text must fit here too; `scan --json` switches to `value_b64` when its text
    /// would not (see `RecordLine`).
    static let valueBudget = 4 * ((WriteTransaction.maxValueSize + 2) / 3)

    /// The longest line a valid operation can need: the value's budget, plus the key, the table
    /// and the owner written as JSON text with every byte escaped as `\u00XX` (6 bytes), plus
    /// 64 KiB for member names, punctuation, whitespace and small unknown members.
    /// With a 64 MiB value limit: 89,478,488 + 6,144 + 378 + 768 + 65,536 = 89,551,314 bytes.
    static let maxLineLength =
        valueBudget + 6 * WriteTransaction.maxKeySize + 6 * maxTableLength + 6 * SubjectID.maxLength + (64 << 10)

    /// The number of the last line returned, from 1.
    private(set) var number = 0

    private let limit: Int
    private var chunk = [UInt8](repeating: 0, count: 1 << 16)
    /// The unread bytes of `chunk` are `start..<end`.
    private var start = 0
    private var end = 0
    private var endOfInput = false

    init(limit: Int = LineReader.maxLineLength) { self.limit = limit }

    /// The next line that is not blank (only spaces, tabs and carriage returns), or nil at the
    /// end of input. Throws `io` when stdin cannot be read.
    mutating func next() throws -> Line? {
        while let line = try nextLine() {
            number += 1
            if case .text(let bytes) = line, bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            return line
        }
        return nil
    }

    private mutating func nextLine() throws -> Line? {
        var line: [UInt8] = []
        var length = 0
        var started = false
        while true {
            if start == end {
                guard try fill() else {
                    guard started else { return nil }
                    return length > limit ? .tooLong(length: length) : .text(line)
                }
            }
            started = true
            let newline: Int? = chunk.withUnsafeBytes { buffer in
                memchr(buffer.baseAddress! + start, 0x0A, end - start).map {
                    UnsafeRawPointer($0) - buffer.baseAddress!
                }
            }
            let stop = newline ?? end
            let piece = stop - start
            if length + piece <= limit {
                if line.count + piece > line.capacity {
                    // Grow by doubling, but never past the limit: a line at the limit costs no
                    // more than the limit.
                    line.reserveCapacity(min(limit, max(2 * (line.count + piece), 4096)))
                }
                line.append(contentsOf: chunk[start..<stop])
            } else if !line.isEmpty {
                line = []  // Too long: the kept bytes are of no use any more.
            }
            length += piece
            if let newline {
                start = newline + 1
                return length > limit ? .tooLong(length: length) : .text(line)
            }
            start = end
        }
    }

    /// The input of a command run on a host for an operator (it came with the request), read
    /// instead of stdin.
    @TaskLocal static var providedInput: ProvidedInput?

    /// Reads the next chunk; false at the end of input.
    private mutating func fill() throws -> Bool {
        guard !endOfInput else { return false }
        let n = try LineReader.providedInput.map { $0.read(into: &chunk) } ?? readStandardInput()
        if n == 0 {
            endOfInput = true
            return false
        }
        start = 0
        end = n
        return true
    }

    /// Reads the next bytes of stdin into `chunk`; 0 at its end.
    private mutating func readStandardInput() throws -> Int {
        while true {
            let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 {
                throw CLIError(
                    code: "io",
                    message: "cannot read standard input: \(String(cString: strerror(errno))) (errno \(errno))")
            }
            return n
        }
    }

}

/// Bytes standing in for stdin (`LineReader.providedInput`).
final class ProvidedInput: @unchecked Sendable {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// Copies the next bytes into `chunk`; 0 at the end.
    func read(into chunk: inout [UInt8]) -> Int {
        let n = min(chunk.count, bytes.count - offset)
        chunk.replaceSubrange(0..<n, with: bytes[offset..<offset + n])
        offset += n
        return n
    }
}
