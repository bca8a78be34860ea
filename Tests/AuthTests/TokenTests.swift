import Crypto
import Foundation
import PartitionDB
import Residency
import XCTest

@testable import Auth

final class TokenTests: XCTestCase {
    let settings = TokenSettings(issuerBase: "https://auth.example.com", audience: "pdb-api")
    let clock = ManualClock()

    /// A region's keys, issuer and a verifier that knows the published keys.
    struct RegionTokens {
        let site: TestSite
        let keys: RegionKeys
        let publisher: DirectoryKeyPublisher
        let issuer: TokenIssuer
        let verifier: TokenVerifier
    }

    func region(_ site: TestSite, publishingTo directorySite: TestSite? = nil, algorithm: SigningAlgorithm = .es256)
        -> RegionTokens
    {
        let clock = clock
        var settings = settings
        settings.algorithm = algorithm
        let publisher = DirectoryKeyPublisher(database: (directorySite ?? site).database)
        let keys = RegionKeys(
            database: site.database, homes: site.directory, publisher: publisher, settings: settings,
            now: { clock.now })
        return RegionTokens(
            site: site, keys: keys, publisher: publisher, issuer: TokenIssuer(keys: keys, now: { clock.now }),
            verifier: TokenVerifier(settings: settings, directory: site.directory, now: { clock.now }))
    }

    func refresh(_ region: RegionTokens) async throws {
        try await region.verifier.setKeys(region.publisher.publishedKeys())
    }

    func testATokenCarriesTheClaimsAndVerifiesInEveryRegion() async throws {
        let directorySite = try TestSite(self, region: us)
        let euSite = try TestSite(self, region: eu, sharedDirectory: directorySite.directory)
        let euRegion = region(euSite, publishingTo: directorySite)
        let usRegion = region(directorySite)
        let ana = try SubjectID(String(repeating: "a", count: 64))
        _ = try await directorySite.directory.assignHome(ana, to: eu)
        let issued = try await euRegion.issuer.accessToken(for: ana)
        XCTAssertEqual(issued.expiresIn, 900)
        let claims = issued.claims
        XCTAssertEqual(claims.issuer, "https://auth.example.com/eu")
        XCTAssertEqual(claims.audience, ["pdb-api"])
        XCTAssertEqual(claims.region, "eu")
        XCTAssertEqual(claims.tokenUse, "access")
        XCTAssertEqual(claims.expires - claims.issuedAt, 900)
        let header =
            try JSONSerialization.jsonObject(
                with: Data(Base64URL.decode(issued.token.split(separator: ".")[0])!)) as! [String: Any]
        XCTAssertEqual(header["alg"] as? String, "ES256")
        XCTAssertEqual(header["kid"] as? String, issued.kid)
        let payload =
            try JSONSerialization.jsonObject(
                with: Data(Base64URL.decode(issued.token.split(separator: ".")[1])!)) as! [String: Any]
        XCTAssertEqual(
            Set(payload.keys), ["iss", "aud", "sub", "custom:region", "iat", "nbf", "exp", "jti", "token_use"])

        // Verified offline on a host of another region: its keys are in the directory.
        try await refresh(usRegion)
        let verified = try usRegion.verifier.verify(issued.token)
        XCTAssertEqual(verified.subject, ana)
        XCTAssertEqual(verified.region, eu)
        // The private key is only in eu's partition; the directory has the public half.
        let privateKey = try await euRegion.keys.signingKey().privateKey
        for stored in [Base64URL.encode(privateKey[...]), String(decoding: privateKey, as: UTF8.self)] {
            XCTAssertEqual(
                try filesContaining(stored, under: directorySite.path, bytes: Array(stored.utf8)), [],
                "no private key outside its region")
        }
        XCTAssertFalse(try filesContaining(Base64URL.encode(privateKey[...]), under: euSite.path).isEmpty)
    }

    func testAVerifiedTokenOpensOnlyTheHomeRegionsPartitionsOnAHostOfThatRegion() async throws {
        let directorySite = try TestSite(self, region: us)
        let euSite = try TestSite(self, region: eu, sharedDirectory: directorySite.directory)
        let euTokens = region(euSite, publishingTo: directorySite)
        let usTokens = region(directorySite)
        let ana = try SubjectID("ana")
        _ = try await directorySite.directory.assignHome(ana, to: eu)
        let issued = try await euTokens.issuer.accessToken(for: ana)
        try await refresh(euTokens)
        try await refresh(usTokens)
        let context = try SubjectContext(try euTokens.verifier.verify(issued.token), database: euSite.database)
        XCTAssertEqual(try context.partition("users").region, eu)
        XCTAssertThrowsError(try context.partition("global")) {
            XCTAssertEqual($0 as? AuthError, .misdirected(home: "eu", here: "global"))
        }
        // Verified on a us host too (offline), but it opens nothing there.
        let elsewhere = try usTokens.verifier.verify(issued.token)
        XCTAssertThrowsError(try SubjectContext(elsewhere, database: directorySite.database)) {
            XCTAssertEqual($0 as? AuthError, .misdirected(home: "eu", here: "us"))
        }
    }

    func testEdDSAKeysSignAndVerifyToo() async throws {
        let site = try TestSite(self, region: eu)
        let eddsa = region(site, algorithm: .eddsa)
        let ana = try SubjectID("ana")
        _ = try await site.directory.assignHome(ana, to: eu)
        let issued = try await eddsa.issuer.accessToken(for: ana)
        try await refresh(eddsa)
        XCTAssertEqual(try eddsa.verifier.verify(issued.token).subject, ana)
        let header =
            try JSONSerialization.jsonObject(
                with: Data(Base64URL.decode(issued.token.split(separator: ".")[0])!)) as! [String: Any]
        XCTAssertEqual(header["alg"] as? String, "EdDSA")
    }

    /// Every rejection of spec/auth.md#verification, each with a token crafted for it.
    func testEveryRejectionWithACraftedToken() async throws {
        let directorySite = try TestSite(self, region: us)
        let euSite = try TestSite(self, region: eu, sharedDirectory: directorySite.directory)
        let euRegion = region(euSite, publishingTo: directorySite)
        let usRegion = region(directorySite)
        let ana = try SubjectID("ana")
        let bob = try SubjectID("bob")
        _ = try await directorySite.directory.assignHome(ana, to: eu)
        _ = try await directorySite.directory.assignHome(bob, to: us)
        let key = try await euRegion.keys.signingKey()
        _ = try await usRegion.keys.signingKey()
        try await refresh(euRegion)
        let verifier = euRegion.verifier
        let now = Int64(clock.now.timeIntervalSince1970)
        let goodClaims: [String: Any] = [
            "iss": "https://auth.example.com/eu", "aud": "pdb-api", "sub": "ana", "custom:region": "eu", "iat": now,
            "nbf": now, "exp": now + 900, "jti": "j1", "token_use": "access",
        ]
        let goodHeader: [String: Any] = ["alg": "ES256", "kid": key.kid, "typ": "JWT"]
        func claims(_ changes: [String: Any]) -> [String: Any] { goodClaims.merging(changes) { $1 } }
        func header(_ changes: [String: Any]) -> [String: Any] { goodHeader.merging(changes) { $1 } }

        XCTAssertEqual(try verifier.verify(craft(goodHeader, goodClaims, key)).subject, ana, "the crafted baseline")
        // An array audience, and dates within the leeway, verify.
        XCTAssertNoThrow(try verifier.verify(craft(goodHeader, claims(["aud": ["other", "pdb-api"]]), key)))
        XCTAssertNoThrow(try verifier.verify(craft(goodHeader, claims(["exp": now - 29]), key)))
        XCTAssertNoThrow(try verifier.verify(craft(goodHeader, claims(["nbf": now + 29]), key)))

        let unsigned = { (alg: String) in
            Base64URL.encode(json(["alg": alg, "kid": key.kid])[...]) + "." + Base64URL.encode(json(goodClaims)[...])
                + "."
        }
        let publicKey = try key.publicKey().rawKey
        let hs256Input =
            Base64URL.encode(json(header(["alg": "HS256"]))[...]) + "." + Base64URL.encode(json(goodClaims)[...])
        let hs256 =
            hs256Input + "."
            + Base64URL.encode(
                Array(
                    HMAC<SHA256>.authenticationCode(for: Array(hs256Input.utf8), using: SymmetricKey(data: publicKey)))[
                        ...])
        let good = try craft(goodHeader, goodClaims, key)
        var flipped = Array(good.utf8)
        flipped[flipped.count - 5] =
            flipped[flipped.count - 5] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")

        let cases: [(String, String, TokenRejection)] = [
            ("alg none", unsigned("none"), .unsecured),
            ("alg NoNe", unsigned("NoNe"), .unsecured),
            ("HS256 keyed with the public key", hs256, .algorithmMismatch(alg: "HS256", keyAlgorithm: "ES256")),
            (
                "EdDSA named on an ES256 key", try craft(header(["alg": "EdDSA"]), goodClaims, key),
                .algorithmMismatch(alg: "EdDSA", keyAlgorithm: "ES256")
            ),
            ("no kid", try craft(["alg": "ES256"], goodClaims, key), .missingKeyID),
            // jwt-kit would fall back to its default key here; the real key signed it.
            ("a made-up kid", try craft(header(["kid": "made-up"]), goodClaims, key), .unknownKey(kid: "made-up")),
            ("a flipped signature", String(decoding: flipped, as: UTF8.self), .badSignature),
            (
                "another key's signature",
                try craft(goodHeader, goodClaims, SigningKey.generate(region: eu, algorithm: .es256, now: clock.now)),
                .badSignature
            ),
            ("expired beyond the leeway", try craft(goodHeader, claims(["exp": now - 31]), key), .expired),
            ("not yet valid beyond the leeway", try craft(goodHeader, claims(["nbf": now + 31]), key), .notYetValid),
            (
                "a foreign issuer", try craft(goodHeader, claims(["iss": "https://evil.example"]), key),
                .wrongIssuer(issuer: "https://evil.example")
            ),
            (
                "us's issuer on eu's key", try craft(goodHeader, claims(["iss": "https://auth.example.com/us"]), key),
                .issuerDoesNotOwnKey(issuer: "https://auth.example.com/us")
            ),
            ("another audience", try craft(goodHeader, claims(["aud": "someone-else"]), key), .wrongAudience),
            ("an id token", try craft(goodHeader, claims(["token_use": "id"]), key), .wrongTokenUse("id")),
            (
                "custom:region us on eu's key", try craft(goodHeader, claims(["custom:region": "us"]), key),
                .regionNotTheKeys(claim: "us", keyRegion: "eu")
            ),
            (
                "a subject whose home is us", try craft(goodHeader, claims(["sub": "bob"]), key),
                .regionNotHome(claim: "eu", home: "us")
            ),
            (
                "a subject with no home", try craft(goodHeader, claims(["sub": "carol"]), key),
                .regionNotHome(claim: "eu", home: nil)
            ),
            ("two parts", "abc.def", .malformed(reason: "not three parts")),
            ("four parts", good + ".x", .malformed(reason: "not three parts")),
            (
                "a header that is not JSON",
                "bm90IGpzb24." + good.split(separator: ".").dropFirst().joined(separator: "."),
                .malformed(reason: "the header is not base64url JSON")
            ),
            (
                "a date that is a string", try craft(goodHeader, claims(["exp": "tomorrow"]), key),
                .malformed(reason: "the claims are not those of an access token")
            ),
            (
                "a missing claim", try craft(goodHeader, goodClaims.filter { $0.key != "jti" }, key),
                .malformed(reason: "the claims are not those of an access token")
            ),
            ("8 KiB and more", String(repeating: "a", count: 9000), .malformed(reason: "too long")),
        ]
        for (name, token, rejection) in cases {
            XCTAssertThrowsError(try verifier.verify(token), name) {
                XCTAssertEqual($0 as? AuthError, .tokenRejected(rejection), name)
            }
        }
    }

    /// RFC 7515 appendix A.3 (ES256) and RFC 8037 appendix A.4 (Ed25519) through the verifier's
    /// signature step; the whole verifier then refuses them for their missing `kid`.
    func testTheRFCVectorsVerifyThroughTheSignatureStep() async throws {
        let es256 = try PublicSigningKey(
            jwk: [
                "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "rfc7515-a3",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            ], region: eu, verifiesUntil: nil)
        let es256Token =
            "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
        let ed25519 = try PublicSigningKey(
            jwk: [
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "rfc8037-a4",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            ],
            region: eu, verifiesUntil: nil)
        let ed25519Token =
            "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        for (key, token) in [(es256, es256Token), (ed25519, ed25519Token)] {
            let parts = token.split(separator: ".")
            let input = Array("\(parts[0]).\(parts[1])".utf8)
            var signature = try XCTUnwrap(Base64URL.decode(parts[2]))
            let verifier = try await key.verifier()
            XCTAssertTrue(try verifier.verify(signature, signs: input), key.kid)
            signature[10] ^= 1
            XCTAssertFalse((try? verifier.verify(signature, signs: input)) ?? false, key.kid)
        }
        // Ed25519 is deterministic: the RFC's private key reproduces the RFC's signature.
        let seed = try XCTUnwrap(Base64URL.decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"))
        let rfcKey = SigningKey(kid: "rfc8037-a4", region: eu, algorithm: .eddsa, privateKey: seed, createdAt: 0)
        XCTAssertEqual(try rfcKey.publicKey().rawKey, ed25519.rawKey)
        let signed = try Curve25519.Signing.PrivateKey(rawRepresentation: seed).signature(
            for: Array("eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc".utf8))
        XCTAssertEqual(Base64URL.encode(Array(signed)[...]), String(ed25519Token.split(separator: ".")[2]))

        let site = try TestSite(self, region: eu)
        let verifier = TokenVerifier(settings: settings, directory: site.directory)
        try await verifier.setKeys([es256, ed25519])
        for token in [es256Token, ed25519Token] {
            XCTAssertThrowsError(try verifier.verify(token)) {
                XCTAssertEqual($0 as? AuthError, .tokenRejected(.missingKeyID))
            }
        }
    }

    func testRotationKeepsOldTokensValidUntilTheyExpire() async throws {
        let site = try TestSite(self, region: eu)
        let tokens = region(site)
        let ana = try SubjectID("ana")
        _ = try await site.directory.assignHome(ana, to: eu)
        let old = try await tokens.issuer.accessToken(for: ana)
        clock.advance(60)
        let newKey = try await tokens.keys.rotate()
        XCTAssertNotEqual(newKey.kid, old.kid)
        try await refresh(tokens)
        let fresh = try await tokens.issuer.accessToken(for: ana)
        XCTAssertEqual(fresh.kid, newKey.kid, "the new key signs from the rotation on")
        XCTAssertEqual(try tokens.verifier.verify(old.token).kid, old.kid, "the old key still verifies")
        let listed = try await tokens.keys.list()
        XCTAssertEqual(listed.map(\.kid), [newKey.kid, old.kid])
        XCTAssertEqual(listed.map(\.signing), [true, false])
        let published = try await tokens.publisher.publishedKeys()
        XCTAssertTrue(jwksJSON(published, at: clock.now).contains(old.kid))

        // 900 s lifetime + 30 s leeway after the rotation, the old key is gone from the JWKS and
        // its tokens (expired by then anyway) are refused; the new key's verify.
        clock.advance(931)
        XCTAssertFalse(jwksJSON(published, at: clock.now).contains(old.kid))
        XCTAssertTrue(jwksJSON(published, at: clock.now).contains(newKey.kid))
        XCTAssertThrowsError(try tokens.verifier.verify(old.token)) {
            XCTAssertEqual($0 as? AuthError, .tokenRejected(.unknownKey(kid: old.kid)))
        }
        let later = try await tokens.issuer.accessToken(for: ana)
        XCTAssertEqual(try tokens.verifier.verify(later.token).kid, newKey.kid)
    }

    /// A damaged entry in the directory's published keys (here a JWK with a private part) is
    /// left out: the region's real key still verifies, and nothing signed with the bad one does.
    func testADamagedPublishedKeyIsLeftOutAndTheOthersStillVerify() async throws {
        let site = try TestSite(self, region: eu)
        let tokens = region(site)
        let ana = try SubjectID("ana")
        _ = try await site.directory.assignHome(ana, to: eu)
        let issued = try await tokens.issuer.accessToken(for: ana)
        let damaged =
            #"{"jwk":{"crv":"P-256","d":"AAAA","kid":"bad","kty":"EC","x":"AAAA","y":"AAAA"},"region":"eu","v":1,"verifies_until":0}"#
        try site.database.globalPartition().writeReserved { tx in
            try tx.put(DirectoryKeyPublisher.table, Array("bad".utf8), Array(damaged.utf8))
            try tx.put(DirectoryKeyPublisher.table, Array("junk".utf8), Array("not json".utf8))
        }
        let published = try await tokens.publisher.publishedKeys()
        XCTAssertEqual(published.map(\.kid), [issued.kid])
        try await refresh(tokens)
        XCTAssertEqual(try tokens.verifier.verify(issued.token).subject, ana)
    }

    /// Tokens and the JWKS are standard: Python's joserfc (PyPI) verifies a token issued here
    /// against the published JWKS, and a token it signs verifies here.
    func testAnIndependentJOSEImplementationAgreesBothWays() async throws {
        let site = try TestSite(self, region: eu)
        let tokens = region(site)
        let ana = try SubjectID("ana")
        _ = try await site.directory.assignHome(ana, to: eu)
        let issued = try await tokens.issuer.accessToken(for: ana)
        let jwks = jwksJSON(try await tokens.publisher.publishedKeys(), at: clock.now)
        let now = Int64(clock.now.timeIntervalSince1970)
        let script = """
            import json, sys
            from joserfc import jwt
            from joserfc.jwk import ECKey, KeySet
            request = json.load(sys.stdin)
            keys = KeySet.import_key_set(json.loads(request["jwks"]))
            claims = jwt.decode(request["token"], keys, algorithms=["ES256"]).claims
            key = ECKey.generate_key("P-256", {"kid": "python-1", "alg": "ES256", "use": "sig"}, private=True)
            theirs = jwt.encode({"alg": "ES256", "kid": "python-1"}, request["claims"], key)
            print(json.dumps({"claims": claims, "jwk": key.as_dict(private=False), "token": theirs}))
            """
        let ownClaims: [String: Any] = [
            "iss": "https://auth.example.com/eu", "aud": "pdb-api", "sub": "ana", "custom:region": "eu", "iat": now,
            "nbf": now, "exp": now + 600, "jti": "from-python", "token_use": "access",
        ]
        let request = String(
            decoding: json(["jwks": jwks, "token": issued.token, "claims": ownClaims]), as: UTF8.self)
        let answer = try runPython(script, input: request)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any])
        let claims = try XCTUnwrap(object["claims"] as? [String: Any])
        XCTAssertEqual(claims["sub"] as? String, "ana")
        XCTAssertEqual(claims["custom:region"] as? String, "eu")
        XCTAssertEqual(claims["token_use"] as? String, "access")

        let theirKey = try PublicSigningKey(
            jwk: try XCTUnwrap(object["jwk"] as? [String: Any]), region: eu, verifiesUntil: nil)
        try await tokens.verifier.setKeys(try await tokens.publisher.publishedKeys() + [theirKey])
        let verified = try tokens.verifier.verify(try XCTUnwrap(object["token"] as? String))
        XCTAssertEqual(verified.subject, ana)
        XCTAssertEqual(verified.kid, "python-1")
    }

    func testBase64URLRoundTripsAndRefusesWhatIsNotCanonical() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<70 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let text = Base64URL.encode(bytes[...])
            XCTAssertFalse(text.contains("=") || text.contains("+") || text.contains("/"))
            XCTAssertEqual(Base64URL.decode(text), bytes, text)
            XCTAssertEqual(
                text,
                Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                    .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: ""))
        }
        for bad in ["A", "AB=", "AB+/", "a b", "ä", "AB\u{0}", "AF", "AAB"] {
            XCTAssertNil(Base64URL.decode(bad), bad)
        }
        XCTAssertEqual(Base64URL.decode("AA"), [0])
    }

    // MARK: Helpers

    /// A token of `header` and `claims` signed by `key` (any header, any claims).
    func craft(_ header: [String: Any], _ claims: [String: Any], _ key: SigningKey) throws -> String {
        let input = Base64URL.encode(json(header)[...]) + "." + Base64URL.encode(json(claims)[...])
        let signature: [UInt8]
        switch key.algorithm {
        case .es256:
            signature = Array(
                try P256.Signing.PrivateKey(rawRepresentation: key.privateKey).signature(for: Array(input.utf8))
                    .rawRepresentation)
        case .eddsa:
            signature = Array(
                try Curve25519.Signing.PrivateKey(rawRepresentation: key.privateKey).signature(for: Array(input.utf8)))
        }
        return input + "." + Base64URL.encode(signature[...])
    }
}

func json(_ object: Any) -> [UInt8] {
    Array(try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
}

/// Runs `script` with python3, `input` on its standard input; installs joserfc from PyPI first
/// when it is missing. Throws with the script's standard error when it fails.
func runPython(_ script: String, input: String) throws -> String {
    func run(_ arguments: [String], input: String?) throws -> (Int32, String, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        let err = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
    }
    if try run(["python3", "-c", "import joserfc"], input: nil).0 != 0 {
        let (status, _, err) = try run(["python3", "-m", "pip", "install", "-q", "joserfc"], input: nil)
        guard status == 0 else { throw PythonFailure(message: "pip install joserfc failed: \(err)") }
    }
    let (status, out, err) = try run(["python3", "-c", script], input: input)
    guard status == 0 else { throw PythonFailure(message: "the Python script failed: \(err)") }
    return out
}

struct PythonFailure: Error { let message: String }
