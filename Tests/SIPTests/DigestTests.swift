import Testing

@testable import SIP

/// Digest authentication: known answers from the RFCs, algorithm choice, refusal cases.
struct DigestTests {
    @Test func hashesMatchKnownVectors() {
        #expect(MD5.hash(Array("".utf8)).map(hex) == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(MD5.hash(Array("The quick brown fox jumps over the lazy dog".utf8)).map(hex)
                == "9e107d9d372bb6826bd81d3542a419d6")
        #expect(SHA256.hash(Array("abc".utf8)).map(hex)
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // Two blocks: 56 bytes force the length into a second block.
        #expect(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)).map(hex)
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    /// RFC 2617 §3.5's example (MD5, qop=auth).
    @Test func md5ResponseMatchesRFC2617() throws {
        let challenge = try #require(DigestChallenge(
            #"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#))
        #expect(challenge.algorithm == .md5)
        let value = try challenge.authorization(method: "GET", uri: "/dir/index.html", username: "Mufasa",
                                            password: "Circle Of Life", cnonce: "0a4f113b", nonceCount: 1)
        #expect(value.contains(#"response="6629fae49393a05397450978507c4ef1""#), "\(value)")
        #expect(value.contains("nc=00000001"))
        #expect(value.contains("qop=auth"))
        #expect(value.contains(#"opaque="5ccc069c403ebaf9f0171e9517f40e41""#))
    }

    /// RFC 7616 §3.9.1's example, which RFC 8760 uses for SIP: SHA-256 and MD5 answers.
    @Test func sha256ResponseMatchesRFC7616() throws {
        let sha = try #require(DigestChallenge(
            #"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#))
        #expect(sha.algorithm == .sha256)
        let value = try sha.authorization(method: "GET", uri: "/dir/index.html", username: "Mufasa",
                                      password: "Circle of Life", cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
                                      nonceCount: 1)
        #expect(value.contains(#"response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1""#), "\(value)")
        #expect(value.contains("algorithm=SHA-256"))
        let md5 = try #require(DigestChallenge(
            #"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#))
        let md5Value = try md5.authorization(method: "GET", uri: "/dir/index.html", username: "Mufasa",
                                         password: "Circle of Life",
                                         cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", nonceCount: 1)
        #expect(md5Value.contains(#"response="8ca523f5e9506fed4657c9700eebdbec""#), "\(md5Value)")
    }

    @Test func prefersSHA256WhenBothAreOffered() throws {
        let offered = [
            #"Digest realm="r", nonce="n1", algorithm=MD5, qop="auth""#,
            #"Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth""#,
        ]
        #expect(DigestChallenge.best(of: offered)?.algorithm == .sha256)
        #expect(DigestChallenge.best(of: offered.reversed())?.nonce == "n2")
        #expect(DigestChallenge.best(of: [offered[0]])?.algorithm == .md5)
    }

    @Test func refusesWhatItCannotAnswer() throws {
        #expect(DigestChallenge(#"Basic realm="r""#) == nil)
        #expect(DigestChallenge(#"Digest realm="r""#) == nil)  // no nonce
        #expect(DigestChallenge(#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#) == nil)
        #expect(DigestChallenge(#"Digest realm="r", nonce="n", qop="auth-int""#) == nil)
        #expect(DigestChallenge(#"Digest realm="r, nonce="n"#) == nil)  // unterminated quote
        let noQop = DigestChallenge(#"Digest realm="r", nonce="n""#)
        #expect(noQop?.qopAuth == false)
        #expect(try noQop?.authorization(method: "REGISTER", uri: "sip:x", username: "u", password: "p", cnonce: "c",
                                     nonceCount: 1).contains("qop") == false)
    }
}
