import Foundation
import PartitionDB

/// Reads typed values out of the parsed JSON, naming the key of every failure.
struct ConfigurationReader {
    let file: String

    /// The JSON value in `file`; a file that cannot be read or is not JSON is refused naming it.
    static func json(_ file: String) throws -> Any {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ResidencyError.configuration(file: file, key: "(file)", reason: "cannot be read")
        }
        do {
            return try JSONSerialization.jsonObject(with: data, options: [])
        } catch {
            throw ResidencyError.configuration(
                file: file, key: "(file)", reason: "is not valid JSON (\(error.localizedDescription))")
        }
    }

    func bad(_ key: String, _ reason: String) -> ResidencyError {
        .configuration(file: file, key: key.isEmpty ? "(top level)" : key, reason: reason)
    }

    func path(_ at: String, _ key: String) -> String { at.isEmpty ? key : "\(at).\(key)" }

    func object(_ value: Any, at: String) throws -> [String: Any] {
        guard let object = value as? [String: Any] else { throw bad(at, "must be a JSON object") }
        return object
    }

    func allowOnly(_ object: [String: Any], at: String, _ keys: Set<String>) throws {
        if let unknown = object.keys.sorted().first(where: { !keys.contains($0) }) {
            throw bad(path(at, unknown), "is not a known key (known: \(keys.sorted().joined(separator: ", ")))")
        }
    }

    func required(_ object: [String: Any], _ key: String, at: String) throws -> Any {
        guard let value = object[key] else { throw bad(path(at, key), "is missing") }
        return value
    }

    func string(_ object: [String: Any], _ key: String, at: String) throws -> String {
        guard let value = try required(object, key, at: at) as? String, !value.isEmpty else {
            throw bad(path(at, key), "must be a non-empty string")
        }
        return value
    }

    func integer(_ object: [String: Any], _ key: String, at: String) throws -> UInt64 {
        let value = try required(object, key, at: at)
        // JSONSerialization gives booleans as NSNumber too: refuse them by their type.
        guard let number = value as? NSNumber, String(cString: number.objCType) != "c",
            let integer = UInt64(exactly: number.doubleValue)
        else { throw bad(path(at, key), "must be a non-negative integer") }
        return integer
    }

    func name(_ object: [String: Any], _ key: String, at: String) throws -> String {
        let value = try string(object, key, at: at)
        guard PeerIdentity.isValidName(value) else { throw bad(path(at, key), "is not a valid host id") }
        return value
    }

    func region(_ object: [String: Any], _ key: String, at: String) throws -> Region {
        let value = try string(object, key, at: at)
        guard let region = try? Region(value), !region.isGlobal else {
            throw bad(path(at, key), "is not a region name (1 to 31 of a-z, 0-9, -; not global)")
        }
        return region
    }

    func address(_ object: [String: Any], _ key: String, at: String) throws -> HostAddress {
        let value = try string(object, key, at: at)
        guard let address = HostAddress(value) else {
            throw bad(path(at, key), "must be HOST:PORT, e.g. 127.0.0.1:7100")
        }
        return address
    }
}
