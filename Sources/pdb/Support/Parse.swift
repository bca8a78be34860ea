import ArgumentParser
import PartitionDB

/// Argument parsing shared by `validate()` methods: each throws `ValidationError` (exit 64).
enum Parse {
    static func region(_ name: String) throws -> Region {
        do {
            let region = try Region(name)
            guard !region.isGlobal else {
                throw ValidationError("region global is reserved for the residency directory")
            }
            return region
        } catch let error as PartitionDBError {
            throw ValidationError(error.description)
        }
    }

    static func subject(_ id: String) throws -> SubjectID {
        do {
            return try SubjectID(id)
        } catch let error as PartitionDBError {
            throw ValidationError(error.description)
        }
    }

    static func bytes(_ text: String, base64: Bool, what: String) throws -> [UInt8] {
        guard let bytes = Bytes.argument(text, base64: base64) else {
            throw ValidationError("\(what) is not valid base64")
        }
        return bytes
    }
}
