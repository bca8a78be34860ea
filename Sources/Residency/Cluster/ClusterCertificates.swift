import Crypto
import Foundation
import PartitionDB
import SwiftASN1
import X509

/// The cluster's certificate authority and the certificates it issues (spec/replication.md#certificates):
/// P-256 keys, ECDSA with SHA-256, a host's or operator's identity as a SAN URI (`PeerIdentity`).
///
/// A CA folder holds `ca.pem` and `ca-key.pem`; an issued folder, which `pdb serve` and the `pdb`
/// client read as their TLS folder, holds `ca.pem` (the CA's certificate, the only trust root),
/// `certificate.pem` and `private-key.pem`. Keys are written with mode 0600, never over an
/// existing file.
public enum ClusterCertificates {
    public static let caCertificateFile = "ca.pem"
    public static let caKeyFile = "ca-key.pem"
    public static let certificateFile = "certificate.pem"
    public static let privateKeyFile = "private-key.pem"

    /// Validity of a CA made by `createAuthority` unless told otherwise: ten years.
    public static let defaultAuthorityValidity: TimeInterval = 10 * 365 * 86_400
    /// Validity of an issued certificate unless told otherwise: one year.
    public static let defaultValidity: TimeInterval = 365 * 86_400

    /// Creates a new CA in `directory` (created if missing; refused when it holds a CA already).
    public static func createAuthority(
        in directory: String, name: String = "PartitionDB cluster CA",
        validity: TimeInterval = defaultAuthorityValidity,
        now: Date = Date()
    ) throws {
        let key = P256.Signing.PrivateKey()
        let certificateKey = Certificate.PrivateKey(key)
        let subject = try DistinguishedName {
            OrganizationName("PartitionDB")
            CommonName(name)
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: certificateKey.publicKey)
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: certificateKey.publicKey,
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(validity),
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
            issuerPrivateKey: certificateKey)
        try createDirectory(directory)
        try writeNew(key.pemRepresentation, to: path(directory, caKeyFile), secret: true)
        try writeNew(try certificate.serializeAsPEM().pemString, to: path(directory, caCertificateFile), secret: false)
    }

    /// Issues a certificate for `identity`, signed by the CA in `authority`, into `directory`.
    /// A host's certificate also names `localhost` and 127.0.0.1 (hosts are reached by address;
    /// the identity, not the name, is what peers check).
    public static func issue(
        _ identity: PeerIdentity, authority: String, into directory: String, validity: TimeInterval = defaultValidity,
        now: Date = Date()
    ) throws {
        let caPath = path(authority, caCertificateFile)
        let caCertificate = try loadCertificate(caPath)
        let caKeyPath = path(authority, caKeyFile)
        let caKey: Certificate.PrivateKey
        do {
            caKey = Certificate.PrivateKey(try P256.Signing.PrivateKey(pemRepresentation: try readText(caKeyPath)))
        } catch let error as ResidencyError {
            throw error
        } catch {
            throw ResidencyError.certificate(path: caKeyPath, reason: "is not a P-256 private key in PEM (\(error))")
        }
        guard caKey.publicKey == caCertificate.publicKey else {
            throw ResidencyError.certificate(path: caKeyPath, reason: "is not the key of \(caPath)")
        }
        let key = P256.Signing.PrivateKey()
        let certificateKey = Certificate.PrivateKey(key)
        let commonName: String
        let usages: [ExtendedKeyUsage.Usage]
        var names: [GeneralName] = [.uniformResourceIdentifier(identity.uri)]
        switch identity {
        case .host(let id, _):
            commonName = id
            usages = [.serverAuth, .clientAuth]
            names += [.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))]
        case .operator(let name):
            commonName = "operator \(name)"
            usages = [.clientAuth]
        }
        let subject = try DistinguishedName {
            OrganizationName("PartitionDB")
            CommonName(commonName)
        }
        let authorityKeyID = try caCertificate.extensions.subjectKeyIdentifier?.keyIdentifier
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage(usages)
            SubjectAlternativeNames(names)
            SubjectKeyIdentifier(hash: certificateKey.publicKey)
            AuthorityKeyIdentifier(keyIdentifier: authorityKeyID)
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: certificateKey.publicKey,
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(validity),
            issuer: caCertificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions, issuerPrivateKey: caKey)
        try createDirectory(directory)
        try writeNew(key.pemRepresentation, to: path(directory, privateKeyFile), secret: true)
        try writeNew(try certificate.serializeAsPEM().pemString, to: path(directory, certificateFile), secret: false)
        try writeNew(try readText(caPath), to: path(directory, caCertificateFile), secret: false)
    }

    /// The identity a certificate names (its one `pdb://` SAN URI), or nil.
    public static func identity(of certificate: Certificate) -> PeerIdentity? {
        guard let names = try? certificate.extensions.subjectAlternativeNames else { return nil }
        let identities = names.compactMap { name -> PeerIdentity? in
            if case .uniformResourceIdentifier(let uri) = name { return PeerIdentity(uri: uri) }
            return nil
        }
        return identities.count == 1 ? identities[0] : nil
    }

    public static func loadCertificate(_ path: String) throws -> Certificate {
        do {
            return try Certificate(pemEncoded: try readText(path))
        } catch let error as ResidencyError {
            throw error
        } catch {
            throw ResidencyError.certificate(path: path, reason: "is not a certificate in PEM (\(error))")
        }
    }

    static func path(_ directory: String, _ file: String) -> String {
        (directory as NSString).appendingPathComponent(file)
    }

    static func readText(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
        else {
            throw ResidencyError.certificate(path: path, reason: "cannot be read (missing, unreadable or not text)")
        }
        return text
    }

    private static func createDirectory(_ directory: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ResidencyError.certificate(
                path: directory, reason: "cannot be created (\(error.localizedDescription))")
        }
    }

    /// Writes a new file (never over one: `O_EXCL`, and never through a symlink), 0600 for keys.
    private static func writeNew(_ text: String, to path: String, secret: Bool) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, secret ? 0o600 : 0o644)
        guard descriptor >= 0 else {
            let reason =
                errno == EEXIST
                ? "exists already; certificates and keys are never overwritten, choose another folder"
                : "cannot be created (\(String(cString: strerror(errno))))"
            throw ResidencyError.certificate(path: path, reason: reason)
        }
        defer { close(descriptor) }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let result = bytes[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if result < 0, errno == EINTR { continue }
            guard result > 0 else {
                throw ResidencyError.certificate(
                    path: path, reason: "cannot be written (\(String(cString: strerror(errno))))")
            }
            written += result
        }
        guard fsync(descriptor) == 0 else {
            throw ResidencyError.certificate(
                path: path, reason: "cannot be synced (\(String(cString: strerror(errno))))")
        }
    }
}
