/// Untrusted text (a name, subject, key or path a user gave) made safe to echo in a message.
///
/// A message goes to a terminal or a log. Echoed raw, a name with an escape sequence could
/// rewrite the screen or forge log lines, and a name of a megabyte would bury the message. So
/// control and format characters are escaped (`\x1b`, `\u{202e}`), a backslash is doubled so that
/// an escape cannot be faked, and text longer than a limit is cut with an ellipsis and its total
/// length in bytes. Printable text, whatever its script, is shown as is.
package enum Quoting {
    /// How many characters of a name are shown before it is cut.
    package static let nameLimit = 64
    /// Paths are legitimately long, so they get more room than names.
    package static let pathLimit = 512

    /// `text` escaped and, past `nameLimit` characters, cut: for partition, table, subject and
    /// region names, keys and other short user input.
    package static func name(_ text: String) -> String { shown(text, limit: nameLimit) }

    /// `text` escaped and, past `pathLimit` characters, cut: for file and directory paths.
    package static func path(_ text: String) -> String { shown(text, limit: pathLimit) }

    /// `text` with every control or format character escaped and a backslash doubled; when it has
    /// more than `limit` Unicode scalars, only the first `limit` are shown, then
    /// `… (N bytes)` with N the UTF-8 length of the whole text.
    package static func shown(_ text: String, limit: Int) -> String {
        var result = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if count == limit {
                result += "… (\(text.utf8.count) bytes)"
                return result
            }
            count += 1
            result += escaped(scalar)
        }
        return result
    }

    private static func escaped(_ scalar: Unicode.Scalar) -> String {
        if scalar == "\\" { return "\\\\" }
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator:
            let hex = String(scalar.value, radix: 16)
            if scalar.value <= 0xFF { return "\\x" + (hex.count == 1 ? "0" + hex : hex) }
            return "\\u{\(hex)}"
        default:
            return String(scalar)
        }
    }
}
