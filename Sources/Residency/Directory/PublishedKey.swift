import Foundation
import PartitionDB

/// An entry of the directory's table of public signing keys, `pdb.jwks` (spec/auth.md#key-
/// distribution): what the directory's primary stores from a host and the audit checks. The
/// JWK itself is the auth layer's to read.
public enum PublishedKey {
    /// The reserved table of `global` that holds them.
    public static let table = "pdb.jwks"
    /// The most bytes of an entry (a JWK and a few fields need a few hundred).
    public static let maxEntryBytes = 8192

    /// What is wrong with a key entry, or nil: the kid is 1 to 64 base64url characters; the
    /// entry at most 8 KiB of JSON, an object with `"v":1`, `"region"` the given region, and a
    /// `"jwk"` object without a private part (`d`). The JWK itself is the auth layer's to check.
    public static func problem(kid: String, region: String, entry: [UInt8]) -> String? {
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        guard (1...64).contains(kid.utf8.count), kid.utf8.allSatisfy(allowed.contains) else {
            return "a key id is 1 to 64 base64url characters"
        }
        guard entry.count <= maxEntryBytes else {
            return "key \(kid): its entry has \(entry.count) bytes, more than \(maxEntryBytes)"
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(entry)) as? [String: Any],
            object["v"] as? Int == 1, let jwk = object["jwk"] as? [String: Any]
        else { return "key \(kid): its entry is not a JSON object with \"v\":1 and a \"jwk\" object" }
        guard object["region"] as? String == region else {
            return "key \(kid): its entry names region \(object["region"] ?? "none"), not \(region)"
        }
        guard jwk["d"] == nil else { return "key \(kid): its JWK has a private part (d); publish the public key only" }
        return nil
    }
}
