import CArgon2

/// The one file of libargon2 calls. Blocking and memory-hungry (m KiB per call): only
/// `PasswordHasher`'s pool calls these, never an event loop.
enum Argon2id {
    /// The PHC string of `password` under `salt` and `parameters`.
    static func hash(password: [UInt8], salt: [UInt8], parameters: PasswordParameters) throws -> String {
        try parameters.check()
        let length = argon2_encodedlen(
            parameters.iterations, parameters.memoryKiB, parameters.parallelism, UInt32(salt.count),
            UInt32(PasswordHash.hashBytes), Argon2_id)
        var encoded = [CChar](repeating: 0, count: length)
        let status = password.withUnsafeBytes { passwordBytes in
            salt.withUnsafeBytes { saltBytes in
                argon2id_hash_encoded(
                    parameters.iterations, parameters.memoryKiB, parameters.parallelism, passwordBytes.baseAddress,
                    passwordBytes.count, saltBytes.baseAddress, saltBytes.count, PasswordHash.hashBytes, &encoded,
                    length)
            }
        }
        guard status == ARGON2_OK.rawValue else { throw failure(status) }
        return encoded.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Whether `password` matches `hash`. libargon2 recomputes the hash with the stored salt and
    /// parameters and compares in constant time.
    static func verify(password: [UInt8], hash: PasswordHash) throws -> Bool {
        let status = password.withUnsafeBytes { passwordBytes in
            argon2id_verify(hash.phc, passwordBytes.baseAddress, passwordBytes.count)
        }
        switch status {
        case ARGON2_OK.rawValue: return true
        case ARGON2_VERIFY_MISMATCH.rawValue: return false
        case ARGON2_DECODING_FAIL.rawValue, ARGON2_SALT_TOO_SHORT.rawValue, ARGON2_OUTPUT_TOO_SHORT.rawValue:
            throw AuthError.badPasswordHash(reason: "libargon2 cannot decode it (\(message(status)))")
        default: throw failure(status)
        }
    }

    private static func failure(_ status: Int32) -> AuthError { .hashing(code: status, message: message(status)) }

    private static func message(_ status: Int32) -> String { String(cString: argon2_error_message(status)) }
}
