import ArgumentParser

/// The positional arguments that name a table: `DIR PARTITION TABLE`.
struct TableArguments: ParsableArguments {
    @OptionGroup var location: DatabaseArgument

    @Argument(help: "The partition.")
    var partition: String

    @Argument(help: "The table.")
    var table: String
}

/// A record's key as an argument: `KEY`, UTF-8 text or base64 with `--key-b64`.
struct KeyArgument: ParsableArguments {
    @Argument(help: "The key (UTF-8 text, or base64 with --key-b64).")
    var key: String

    @Flag(help: "KEY is base64.")
    var keyB64 = false

    /// The key's bytes; `validate()` has already refused what does not decode.
    func bytes() throws -> [UInt8] { try Parse.bytes(key, base64: keyB64, what: "KEY") }

    func validate() throws { _ = try bytes() }
}
