import Foundation
import Testing

@testable import SIP

/// libcrypto without MD5 (an OpenSSL configured FIPS-only, here with only the base provider,
/// which has no digests at all): the registrar's MD5 challenge is refused with a clear log line
/// and a registration failure, and beeldzorgd keeps running instead of stopping on a
/// precondition.
@Suite(.serialized) struct DigestUnavailableTests {
    @Test func aChallengeLibcryptoCannotAnswerIsRefusedAndTheDaemonRunsOn() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bz-digest-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let opensslConfig = directory.appendingPathComponent("openssl.cnf").path
        try """
        openssl_conf = openssl_init
        [openssl_init]
        providers = provider_sect
        [provider_sect]
        base = base_sect
        [base_sect]
        activate = 1

        """.write(toFile: opensslConfig, atomically: true, encoding: .utf8)
        try "secret\n".write(toFile: directory.appendingPathComponent("password").path, atomically: true, encoding: .utf8)
        chmod(directory.appendingPathComponent("password").path, 0o600)

        let registrar = try await RawPeer.bind()
        defer { Task { await registrar.close() } }
        let post = try await ReinviteTests.freeUDPPort()
        let daemon = try ReinviteDaemonTests.Daemon(
            directory: directory, post: "sip:centrale@127.0.0.1:\(post)",
            account: "  password_file: \(directory.appendingPathComponent("password").path)",
            extra: "edge_proxies:\n  - sip:127.0.0.1:\(registrar.port)",
            environment: ["OPENSSL_CONF": opensslConfig])
        defer { daemon.stop() }

        let (register, source) = try await registrar.nextRequest(.register, timeout: .seconds(20))
        var headers = SIPHeaders()
        for field in register.headers where field.name == "Via" { headers.add("Via", field.value) }
        headers.add("From", register.headers["From"]!)
        headers.add("To", register.headers["To"]! + ";tag=registrar")
        headers.add("Call-ID", register.headers["Call-ID"]!)
        headers.add("CSeq", register.headers["CSeq"]!)
        headers.add("WWW-Authenticate", "Digest realm=\"127.0.0.1\", nonce=\"n0nce\", algorithm=MD5, qop=\"auth\"")
        try await registrar.send(SIPResponse(status: 401, headers: headers).serialized(), to: source)

        try await daemon.waitFor("the refusal in the log") { daemon.log.contains("digest challenge refused") }
        #expect(daemon.log.contains("libcrypto cannot compute MD5"), "\(daemon.log.suffix(3000))")
        #expect(daemon.log.contains("registration failed"))
        // Still alive a moment later, and still answering on its control socket's behalf: running.
        try await Task.sleep(for: .seconds(1))
        #expect(daemon.isRunning, "beeldzorgd stopped: \(daemon.log.suffix(3000))")
    }
}
