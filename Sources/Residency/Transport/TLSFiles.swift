import Foundation
import NIOCore
import NIOSSL
import X509

/// A TLS folder (`ClusterCertificates`: `ca.pem`, `certificate.pem`, `private-key.pem`) made
/// into the mutual TLS of every connection (spec/replication.md#connections): TLS 1.3 only, the
/// cluster CA the one trust root, a certificate required of both sides. Host names are not
/// checked (hosts are reached by address); the peer's identity comes from its verified
/// certificate's `pdb://` SAN URI instead (`PeerIdentity`), and the caller checks it.
public struct TLSFiles: Sendable {
    public let directory: String
    public let identity: PeerIdentity
    let serverContext: NIOSSLContext
    let clientContext: NIOSSLContext

    public init(directory: String) throws {
        self.directory = directory
        let caPath = ClusterCertificates.path(directory, ClusterCertificates.caCertificateFile)
        let certificatePath = ClusterCertificates.path(directory, ClusterCertificates.certificateFile)
        let keyPath = ClusterCertificates.path(directory, ClusterCertificates.privateKeyFile)
        let own = try ClusterCertificates.loadCertificate(certificatePath)
        guard let identity = ClusterCertificates.identity(of: own) else {
            throw ResidencyError.certificate(path: certificatePath, reason: "names no pdb:// identity (SAN URI)")
        }
        self.identity = identity
        func load<T>(_ path: String, _ body: () throws -> T) throws -> T {
            do { return try body() } catch {
                throw ResidencyError.certificate(path: path, reason: "cannot be loaded for TLS (\(error))")
            }
        }
        let ca = try load(caPath) { try NIOSSLCertificate.fromPEMFile(caPath) }
        let chain = try load(certificatePath) { try NIOSSLCertificate.fromPEMFile(certificatePath) }
        let key = try load(keyPath) { try NIOSSLPrivateKey(file: keyPath, format: .pem) }
        var server = TLSConfiguration.makeServerConfigurationWithMTLS(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key),
            trustRoots: .certificates(ca))
        server.minimumTLSVersion = .tlsv13
        server.certificateVerification = .noHostnameVerification
        var client = TLSConfiguration.makeClientConfiguration()
        client.minimumTLSVersion = .tlsv13
        client.certificateChain = chain.map { .certificate($0) }
        client.privateKey = .privateKey(key)
        client.trustRoots = .certificates(ca)
        client.certificateVerification = .noHostnameVerification
        serverContext = try load(directory) { try NIOSSLContext(configuration: server) }
        clientContext = try load(directory) { try NIOSSLContext(configuration: client) }
    }

    /// The identity in the peer's certificate, which TLS has verified against the cluster CA
    /// (chain, validity dates) by the time the handshake completes.
    static func peerIdentity(of channel: Channel) async throws -> PeerIdentity {
        guard let certificate = try await channel.nioSSL_peerCertificate().get() else {
            throw ResidencyError.refused(code: "no_certificate", message: "the peer presented no certificate")
        }
        let parsed = try Certificate(derEncoded: try certificate.toDERBytes())
        guard let identity = ClusterCertificates.identity(of: parsed) else {
            throw ResidencyError.refused(
                code: "no_identity",
                message: "the peer's certificate names no pdb:// identity; issue it with `pdb cert issue`")
        }
        return identity
    }
}
