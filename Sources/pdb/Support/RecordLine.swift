import PartitionDB

/// One line of `scan --json`, `get --json` and `apply` input:
/// `{"op":"put","table":T,"key":K,"value":V,"owner":S}`, with `key_b64`/`value_b64` in place of
/// `key`/`value` for bytes that are not UTF-8, and no `owner` for records without one. Apply
/// also reads `{"op":"del","table":T,"key":K}` and `{"op":"commit"}`. Format: spec/cli.md#apply
struct RecordLine: Codable, Equatable {
    var op: String?
    var table: String?
    var key: String?
    var keyB64: String?
    var value: String?
    var valueB64: String?
    var owner: String?

    enum CodingKeys: String, CodingKey {
        case op, table, key, value, owner
        case keyB64 = "key_b64"
        case valueB64 = "value_b64"
    }

    init() {}

    init(op: String) {
        self.op = op
    }

    init(table: String, record: Record) {
        op = "put"
        self.table = table
        if let text = Bytes.text(record.key) { key = text } else { keyB64 = Bytes.base64(record.key) }
        if let text = Bytes.text(record.value), RecordLine.fitsAsText(record.value) {
            value = text
        } else {
            valueB64 = Bytes.base64(record.value)
        }
        owner = record.owner?.rawValue
    }

    /// Whether `value`, written as a JSON string, surely fits the room `apply` gives a value on
    /// its line (`LineReader.valueBudget`): escaped, a control byte takes up to 6 bytes and `"`
    /// or `\\` 2. Only huge values full of them fail this, and they are printed as `value_b64`,
    /// so every line `scan --json` prints can be applied.
    static func fitsAsText(_ value: [UInt8]) -> Bool {
        if 6 * value.count <= LineReader.valueBudget { return true }
        var length = 0
        for byte in value { length += byte < 0x20 ? 6 : (byte == 0x22 || byte == 0x5C ? 2 : 1) }
        return length <= LineReader.valueBudget
    }
}
