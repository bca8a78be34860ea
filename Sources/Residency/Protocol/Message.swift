import CPartitionSupport

/// One frame of the protocol between hosts and from `pdb` to a host (spec/replication.md#frames):
/// the sender's epoch and one message. Every frame is checksummed; a frame is either taken whole
/// or refused whole.
public struct Frame: Equatable, Sendable {
    /// The sender's epoch for the partition the stream is about (1 until promotion exists); on
    /// operator connections, 1.
    public var epoch: UInt64
    public var message: Message

    public init(epoch: UInt64, _ message: Message) {
        self.epoch = epoch
        self.message = message
    }

    /// The most bytes of a frame after its length field.
    public static let maxLength = 64 << 20
    /// Length field, type, epoch, checksum.
    static let overhead = 4 + 1 + 8 + 4

    /// The frame's bytes: length (u32), type (u8), epoch (u64), payload, CRC-32C (u32) of type,
    /// epoch and payload. All integers big-endian.
    public func encoded() -> [UInt8] {
        // One buffer: the length is patched in once the payload is written in place (a batch's
        // compressed bytes are copied once).
        var frame = ByteWriter()
        frame.u32(0)
        frame.u8(message.type.rawValue)
        frame.u64(epoch)
        message.encodePayload(into: &frame)
        let length = UInt32(frame.bytes.count - 4 + 4)
        withUnsafeBytes(of: length.bigEndian) { frame.bytes.replaceSubrange(0..<4, with: $0) }
        let crc = frame.bytes.withUnsafeBytes { pdb_crc32c(0, $0.baseAddress! + 4, $0.count - 4) }
        frame.u32(crc)
        precondition(frame.bytes.count - 4 <= Frame.maxLength, "a frame larger than the protocol allows")
        return frame.bytes
    }

    /// Decodes one whole frame (`bytes` from its length field to its checksum).
    public static func decode(_ bytes: [UInt8]) throws -> Frame {
        var reader = ByteReader(bytes)
        let length = Int(try reader.u32())
        guard length >= Frame.overhead - 4, length <= Frame.maxLength, bytes.count == 4 + length else {
            throw ResidencyError.malformedMessage(reason: "frame length \(length) is out of bounds")
        }
        let stored =
            UInt32(bytes[bytes.count - 4]) << 24 | UInt32(bytes[bytes.count - 3]) << 16
            | UInt32(bytes[bytes.count - 2]) << 8 | UInt32(bytes[bytes.count - 1])
        let computed = bytes.withUnsafeBytes { pdb_crc32c(0, $0.baseAddress! + 4, $0.count - 8) }
        guard stored == computed else { throw ResidencyError.malformedMessage(reason: "frame checksum mismatch") }
        guard let type = MessageType(rawValue: try reader.u8()) else {
            throw ResidencyError.malformedMessage(reason: "unknown message type \(bytes[4])")
        }
        let epoch = try reader.u64()
        guard epoch >= 1 else { throw ResidencyError.malformedMessage(reason: "epoch 0 (epochs start at 1)") }
        var payload = ByteReader(bytes, from: reader.offset, to: bytes.count - 4)
        let message = try Message.decodePayload(type, &payload)
        try payload.finish()
        return Frame(epoch: epoch, message)
    }
}

/// The message types and their numbers on the wire (spec/replication.md#messages).
public enum MessageType: UInt8, CaseIterable, Sendable {
    case hello = 1
    case streamStart = 2
    case snapshotBegin = 3
    case snapshotChunk = 4
    case snapshotEnd = 5
    case batch = 6
    case acknowledgement = 7
    case refusal = 8
    case request = 9
    case output = 10
    case exit = 11
    case heartbeat = 12
    case committed = 13
    case assignHome = 14
    case homeAssigned = 15
    case fence = 16
    case fenced = 17
    case newerEpoch = 18
    case cut = 19
    case publishKey = 20
    case keyPublished = 21
}

public enum Message: Equatable, Sendable {
    /// Replica to primary, first on a replication connection: the partition it wants and where
    /// its copy stands (no file id: it has no copy).
    case hello(protocolVersion: UInt16, partition: String, fileID: [UInt8], durableLSN: UInt64)
    /// Primary to replica: the replica's position is retained; batches follow from `after + 1`.
    case streamStart(fileID: [UInt8], region: String, after: UInt64)
    /// Primary to replica: the `pageCount` pages of `pageSize` bytes of the partition file as of
    /// `lsn` follow in chunks, in page order, each chunk's pages in `encoding`.
    case snapshotBegin(
        fileID: [UInt8], region: String, lsn: UInt64, pageSize: UInt32, pageCount: UInt32, encoding: SnapshotEncoding)
    /// A run of `pages` whole pages from page `firstPage` (`SnapshotChunk`).
    case snapshotChunk(firstPage: UInt32, pages: UInt32, bytes: [UInt8])
    /// Every announced page has been sent; the replica installs the file once it holds them all.
    case snapshotEnd
    /// Consecutive commits from `firstLSN`, their change sets zstd-compressed (`ChangeBatch`).
    case batch(fileID: [UInt8], firstLSN: UInt64, count: UInt32, uncompressedLength: UInt32, compressed: [UInt8])
    /// Replica to primary: every commit up to `durableLSN` is durable on the replica.
    case acknowledgement(durableLSN: UInt64)
    /// Either side, last before it closes: why the other side's request is refused.
    case refusal(code: String, message: String)
    /// Operator to host: a `pdb` command line (without the address and TLS options) and its input.
    case request(arguments: [String], input: [UInt8])
    /// Host to operator: bytes the command wrote to stdout (1) or stderr (2).
    case output(stream: UInt8, bytes: [UInt8])
    /// Host to operator, last: the command's exit status.
    case exit(status: UInt32)
    /// Primary to replica while idle: its newest LSN and its clock, for lag figures.
    case heartbeat(lastLSN: UInt64, sentMilliseconds: UInt64)
    /// Primary to a host that forwarded a write, before `exit`: the partition's newest LSN when
    /// the write's command finished, which the forwarding host's copy must reach before it
    /// answers (spec/replication.md#write-forwarding).
    case committed(lsn: UInt64)
    /// A host to the directory's primary: assign `subject` the home `region` if it has none
    /// (`ResidencyDirectory.assignHome`, forwarded: spec/replication.md#write-forwarding).
    case assignHome(subject: String, region: String)
    /// The directory's primary's answer: whether this request created the entry, the subject's
    /// home now (another than asked: the subject was registered already), and the directory's
    /// newest LSN then, which the asking host's copy must reach before it returns.
    case homeAssigned(created: Bool, home: String, lsn: UInt64)
    /// A host being promoted to every other host of the partition, first on its connection:
    /// `primary` leads the partition from the frame's epoch on; stop following any older epoch's
    /// primary (spec/replication.md#promotion).
    case fence(partition: String, primary: String)
    /// The answer to a fence, once the receiver's term file holds the new epoch: its copy's
    /// file id, durable LSN and the epoch in its header (no file id: it has no copy). A copy of
    /// an older epoch than the one its host led never began that epoch.
    case fenced(fileID: [UInt8], durableLSN: UInt64, copyEpoch: UInt64)
    /// Instead of an answer, to a host that sent a frame of an older epoch: `primary` leads the
    /// partition at the frame's epoch. The receiver follows it from then on.
    case newerEpoch(partition: String, primary: String)
    /// Primary to a replica, before a snapshot: the replica's copy has commits of an older epoch
    /// after `commonLSN` that the partition's history does not have; it keeps its copy aside
    /// before the snapshot replaces it (spec/replication.md#rejoin).
    case cut(commonLSN: UInt64)
    /// A host to the directory's primary: store the public signing key `kid` of the sender's
    /// own region, `region`, as `entry` in the directory's table of published keys
    /// (spec/replication.md#write-forwarding).
    case publishKey(kid: String, region: String, entry: [UInt8])
    /// The directory's primary's answer: the directory's newest LSN once the key is stored,
    /// which the asking host's copy must reach before it returns.
    case keyPublished(lsn: UInt64)

    /// 3: epochs, fences and rejoin; a hello's frame carries the copy's epoch
    /// (spec/replication.md#version-history).
    public static let protocolVersion: UInt16 = 4
    /// The most bytes of a refusal's message (longer ones are cut when sent).
    static let maxRefusalMessage = 65_536

    /// The UTF-8 of `text`, cut to at most `limit` bytes at a character boundary, so that what
    /// is sent still decodes.
    static func utf8Prefix(_ text: String, _ limit: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        for scalar in text.unicodeScalars {
            let encoded = Array(String(scalar).utf8)
            guard bytes.count + encoded.count <= limit else { break }
            bytes += encoded
        }
        return bytes
    }
    /// The most arguments of a request, and the most bytes of a request's input.
    public static let maxArguments = 4096
    public static let maxInput = Frame.maxLength - 1 << 20

    public var type: MessageType {
        switch self {
        case .hello: return .hello
        case .streamStart: return .streamStart
        case .snapshotBegin: return .snapshotBegin
        case .snapshotChunk: return .snapshotChunk
        case .snapshotEnd: return .snapshotEnd
        case .batch: return .batch
        case .acknowledgement: return .acknowledgement
        case .refusal: return .refusal
        case .request: return .request
        case .output: return .output
        case .exit: return .exit
        case .heartbeat: return .heartbeat
        case .committed: return .committed
        case .assignHome: return .assignHome
        case .homeAssigned: return .homeAssigned
        case .fence: return .fence
        case .fenced: return .fenced
        case .newerEpoch: return .newerEpoch
        case .cut: return .cut
        case .publishKey: return .publishKey
        case .keyPublished: return .keyPublished
        }
    }

    func encodePayload(into writer: inout ByteWriter) {
        switch self {
        case .hello(let version, let partition, let fileID, let lsn):
            writer.u16(version)
            writer.short(Array(partition.utf8))
            writer.short(fileID)
            writer.u64(lsn)
        case .streamStart(let fileID, let region, let after):
            writer.short(fileID)
            writer.short(Array(region.utf8))
            writer.u64(after)
        case .snapshotBegin(let fileID, let region, let lsn, let pageSize, let pageCount, let encoding):
            writer.short(fileID)
            writer.short(Array(region.utf8))
            writer.u64(lsn)
            writer.u32(pageSize)
            writer.u32(pageCount)
            writer.u8(encoding.rawValue)
        case .snapshotChunk(let first, let pages, let bytes):
            writer.u32(first)
            writer.u32(pages)
            writer.bytes.append(contentsOf: bytes)
        case .snapshotEnd:
            break
        case .batch(let fileID, let first, let count, let length, let compressed):
            writer.short(fileID)
            writer.u64(first)
            writer.u32(count)
            writer.u32(length)
            writer.bytes.append(contentsOf: compressed)
        case .acknowledgement(let lsn):
            writer.u64(lsn)
        case .refusal(let code, let message):
            writer.short(Message.utf8Prefix(code, 255))
            writer.long(Message.utf8Prefix(message, Message.maxRefusalMessage))
        case .request(let arguments, let input):
            writer.u32(UInt32(arguments.count))
            for argument in arguments { writer.long(Array(argument.utf8)) }
            writer.long(input)
        case .output(let stream, let bytes):
            writer.u8(stream)
            writer.bytes.append(contentsOf: bytes)
        case .exit(let status):
            writer.u32(status)
        case .heartbeat(let lsn, let milliseconds):
            writer.u64(lsn)
            writer.u64(milliseconds)
        case .committed(let lsn):
            writer.u64(lsn)
        case .assignHome(let subject, let region):
            writer.short(Array(subject.utf8))
            writer.short(Array(region.utf8))
        case .homeAssigned(let created, let home, let lsn):
            writer.u8(created ? 1 : 0)
            writer.short(Array(home.utf8))
            writer.u64(lsn)
        case .fence(let partition, let primary), .newerEpoch(let partition, let primary):
            writer.short(Array(partition.utf8))
            writer.short(Array(primary.utf8))
        case .fenced(let fileID, let lsn, let copyEpoch):
            writer.short(fileID)
            writer.u64(lsn)
            writer.u64(copyEpoch)
        case .publishKey(let kid, let region, let entry):
            writer.short(Array(kid.utf8))
            writer.short(Array(region.utf8))
            writer.long(entry)
        case .keyPublished(let lsn):
            writer.u64(lsn)
        case .cut(let lsn):
            writer.u64(lsn)
        }
    }

    static func decodePayload(_ type: MessageType, _ reader: inout ByteReader) throws -> Message {
        switch type {
        case .hello:
            let version = try reader.u16()
            return .hello(
                protocolVersion: version, partition: try reader.text(), fileID: try reader.short(),
                durableLSN: try reader.u64())
        case .streamStart:
            return .streamStart(fileID: try reader.short(), region: try reader.text(), after: try reader.u64())
        case .snapshotBegin:
            let fileID = try reader.short()
            let region = try reader.text()
            let lsn = try reader.u64()
            let pageSize = try reader.u32()
            let pageCount = try reader.u32()
            let code = try reader.u8()
            guard let encoding = SnapshotEncoding(rawValue: code) else {
                throw ResidencyError.malformedMessage(reason: "snapshot encoding \(code)")
            }
            return .snapshotBegin(
                fileID: fileID, region: region, lsn: lsn, pageSize: pageSize, pageCount: pageCount, encoding: encoding)
        case .snapshotChunk:
            let first = try reader.u32()
            let pages = try reader.u32()
            guard pages >= 1, first &+ pages > first else {
                throw ResidencyError.malformedMessage(
                    reason: "a snapshot chunk of \(pages) pages from page \(first) is out of bounds")
            }
            return .snapshotChunk(firstPage: first, pages: pages, bytes: try reader.take(reader.remaining))
        case .snapshotEnd:
            return .snapshotEnd
        case .batch:
            let fileID = try reader.short()
            let first = try reader.u64()
            let count = try reader.u32()
            let length = try reader.u32()
            guard count >= 1, first >= 1, first &+ UInt64(count) > first, Int(length) <= Frame.maxLength else {
                throw ResidencyError.malformedMessage(
                    reason: "a batch of \(count) commits from LSN \(first) is out of bounds")
            }
            return .batch(
                fileID: fileID, firstLSN: first, count: count, uncompressedLength: length,
                compressed: try reader.take(reader.remaining))
        case .acknowledgement:
            return .acknowledgement(durableLSN: try reader.u64())
        case .refusal:
            let code = try reader.text()
            let bytes = try reader.long()
            guard bytes.count <= maxRefusalMessage, let message = String(validating: bytes, as: UTF8.self) else {
                throw ResidencyError.malformedMessage(reason: "a refusal's message is not UTF-8 of at most 64 KiB")
            }
            return .refusal(code: code, message: message)
        case .request:
            let count = Int(try reader.u32())
            guard count <= maxArguments else {
                throw ResidencyError.malformedMessage(reason: "a request with \(count) arguments")
            }
            var arguments: [String] = []
            for _ in 0..<count {
                guard let argument = String(validating: try reader.long(), as: UTF8.self) else {
                    throw ResidencyError.malformedMessage(reason: "a request argument is not UTF-8")
                }
                arguments.append(argument)
            }
            return .request(arguments: arguments, input: try reader.long())
        case .output:
            let stream = try reader.u8()
            guard stream == 1 || stream == 2 else {
                throw ResidencyError.malformedMessage(reason: "output stream \(stream)")
            }
            return .output(stream: stream, bytes: try reader.take(reader.remaining))
        case .exit:
            return .exit(status: try reader.u32())
        case .heartbeat:
            return .heartbeat(lastLSN: try reader.u64(), sentMilliseconds: try reader.u64())
        case .committed:
            return .committed(lsn: try reader.u64())
        case .assignHome:
            return .assignHome(subject: try reader.text(), region: try reader.text())
        case .homeAssigned:
            let created = try reader.u8()
            guard created <= 1 else {
                throw ResidencyError.malformedMessage(reason: "created is \(created), not 0 or 1")
            }
            return .homeAssigned(created: created == 1, home: try reader.text(), lsn: try reader.u64())
        case .fence:
            return .fence(partition: try reader.text(), primary: try reader.text())
        case .fenced:
            return .fenced(fileID: try reader.short(), durableLSN: try reader.u64(), copyEpoch: try reader.u64())
        case .newerEpoch:
            return .newerEpoch(partition: try reader.text(), primary: try reader.text())
        case .cut:
            return .cut(commonLSN: try reader.u64())
        case .publishKey:
            return .publishKey(kid: try reader.text(), region: try reader.text(), entry: try reader.long())
        case .keyPublished:
            return .keyPublished(lsn: try reader.u64())
        }
    }
}

/// Splits a byte stream into frames as bytes arrive. A frame's length is checked before its
/// bytes are buffered, so a hostile length cannot make the receiver allocate more than
/// `Frame.maxLength`.
public struct FrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    /// Where the next frame starts in `buffer`; consumed bytes are dropped when new ones come.
    private var start = 0

    public init() {}

    public mutating func append(_ bytes: some Sequence<UInt8>) {
        if start > 0 {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next whole frame, nil when more bytes are needed; throws on a malformed frame (the
    /// stream is then unusable: close it).
    public mutating func next() throws -> Frame? {
        guard buffer.count - start >= 4 else { return nil }
        let length =
            Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8
            | Int(buffer[start + 3])
        guard length >= Frame.overhead - 4, length <= Frame.maxLength else {
            throw ResidencyError.malformedMessage(reason: "frame length \(length) is out of bounds")
        }
        guard buffer.count - start >= 4 + length else { return nil }
        let frame = Array(buffer[start..<start + 4 + length])
        start += 4 + length
        return try Frame.decode(frame)
    }

    /// Bytes received that are not a whole frame yet.
    public var bufferedBytes: Int { buffer.count - start }
}
