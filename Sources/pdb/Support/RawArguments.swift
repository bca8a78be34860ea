import ArgumentParser

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The command line as the kernel passed it, before Swift repairs it.
///
/// `CommandLine.arguments` replaces bytes that are not UTF-8 with U+FFFD, so the keys `\xff` and
/// `\xfe` would both become the same key and the second put would overwrite the first. An
/// argument is therefore taken exactly or refused: this check runs on the raw C strings first.
/// Rule: spec/cli.md#conventions
enum RawArguments {
    /// Throws a usage error (exit 64) naming the first argument that is not valid UTF-8, by its
    /// position (1 is the first after `pdb`), without echoing its bytes.
    static func checkUTF8() throws {
        let argv = CommandLine.unsafeArgv
        for index in 1..<Int(CommandLine.argc) {
            guard let pointer = argv[index] else { continue }
            if String(validatingCString: pointer) == nil {
                throw ValidationError(
                    "argument \(index) is not valid UTF-8 text; give a key or value that is not UTF-8 in "
                        + "base64 with --key-b64, --value-b64 or --keys-b64 (names and subjects must be UTF-8)")
            }
        }
    }
}
