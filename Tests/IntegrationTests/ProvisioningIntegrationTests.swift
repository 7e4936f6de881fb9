import BeeldzorgConfig
import Control
import Foundation
import TestSupport
import Testing

/// The built beeldzorgd with a `provisioning:` section, against an organisation's server
/// played by Python's http.server with ssl on 127.0.0.1 (its own CA, pinned by the daemon):
/// contacts arrive and can call in, and the record of the call arrives at the server by id.
@Suite("Provisioning through the daemon", .serialized)
struct ProvisioningIntegrationTests {
    static let token = "it-token-5678"

    static let document = """
        {"schemaVersion": 1,
         "contacts": [{"id": "opa", "displayName": "Opa Henk", "sipURI": "sip:opa@127.0.0.1", "role": "family", "sortOrder": 1}],
         "settings": {}}
        """

    /// The organisation's server: GET …/config serves `doc.json` with an ETag; every POST is
    /// answered 201 and logged as "PATH IDEMPOTENCY-KEY BODY-ID" in `posts.log`.
    final class OrganisationServer {
        let directory: String
        let port: Int
        private let process: Process

        var caFile: String { directory + "/ca.pem" }
        var tokenFile: String { directory + "/token" }

        init() throws {
            directory = NSTemporaryDirectory() + "bz-it-org-" + UUID().uuidString.prefix(8)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            _ = try TestPKI(directory: directory)
            try ProvisioningIntegrationTests.document.write(toFile: directory + "/doc.json", atomically: true, encoding: .utf8)
            try (ProvisioningIntegrationTests.token + "\n").write(toFile: directory + "/token", atomically: true, encoding: .utf8)
            chmod(directory + "/token", 0o600)
            try Self.script.write(toFile: directory + "/server.py", atomically: true, encoding: .utf8)

            (process, port) = try launchPortPrintingServer(
                [directory + "/server.py", directory, ProvisioningIntegrationTests.token])
        }

        /// Every POST received: (path, Idempotency-Key, body id).
        var posts: [(path: String, key: String, id: String)] {
            guard let text = try? String(contentsOfFile: directory + "/posts.log", encoding: .utf8) else { return [] }
            return text.split(separator: "\n").compactMap { line in
                let f = line.split(separator: " ").map(String.init)
                return f.count == 3 ? (f[0], f[1], f[2]) : nil
            }
        }

        func stop() {
            killTestServer(process)
            try? FileManager.default.removeItem(atPath: directory)
        }

        deinit { stop() }

        static let script = #"""
            import hashlib, http.server, json, os, ssl, sys, threading

            directory, token = sys.argv[1], sys.argv[2]
            lock = threading.Lock()

            class Handler(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"

                def log_message(self, *args):
                    pass

                def send(self, status, body=b"", headers=()):
                    self.send_response(status)
                    for name, value in headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def do_GET(self):
                    if self.headers.get("Authorization") != "Bearer " + token:
                        return self.send(401)
                    if not self.path.endswith("/config"):
                        return self.send(404)
                    with open(os.path.join(directory, "doc.json"), "rb") as f:
                        body = f.read()
                    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                    if self.headers.get("If-None-Match") == etag:
                        return self.send(304, b"", [("ETag", etag)])
                    self.send(200, body, [("ETag", etag), ("Content-Type", "application/json")])

                def do_POST(self):
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    if self.headers.get("Authorization") != "Bearer " + token:
                        return self.send(401)
                    record = json.loads(body)
                    with lock, open(os.path.join(directory, "posts.log"), "a") as f:
                        f.write("%s %s %s\n" % (self.path, self.headers.get("Idempotency-Key", "-"), record.get("id", "-")))
                    self.send(201, b"{}", [("Content-Type", "application/json")])

            class Server(http.server.ThreadingHTTPServer):
                daemon_threads = True

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(os.path.join(directory, "server.pem"), os.path.join(directory, "server.key"))
            server = Server(("127.0.0.1", 0), Handler)
            server.socket = context.wrap_socket(server.socket, server_side=True)
            print("PORT", server.server_address[1], flush=True)
            server.serve_forever()
            """#
    }

    @Test func provisionedContactCallsInAndTheCallRecordArrivesAtTheServer() async throws {
        let server = try OrganisationServer()
        defer { server.stop() }
        let daemon = try DaemonUnderTest(extraConfig: """
            provisioning:
              url: https://127.0.0.1:\(server.port)/api/v1/tablets/t1/config
              token_file: \(server.tokenFile)
              ca_file: \(server.caFile)
              interval_minutes: 60
            """)
        try daemon.start()
        try await daemon.waitUntilReady()

        // The document is fetched at start: the server's contact list replaces the demo's.
        try await daemon.waitFor("the provisioned contact", timeout: .seconds(20)) {
            let status = try runCtl(["provision", "status", "--json"], socket: daemon.socketPath)
            return status.status == 0 && status.output.contains("\"contacts\":1") && status.output.contains("\"etag\"")
        }
        let text = try runCtl(["provision", "status"], socket: daemon.socketPath)
        #expect(text.output.contains("applied: 1 contacts"), "\(text.output)")

        // A sync now: same document, the server answers 304.
        let sync = try runCtl(["provision", "sync"], socket: daemon.socketPath)
        #expect(sync.status == 0, "\(sync.error)")
        #expect(sync.output.contains("not modified"), "\(sync.output)")

        // Opa, known only from the server, calls in; a press answers, a long press hangs up.
        let callIn = try runCtl(["demo", "call-in", "--from", "sip:opa@127.0.0.1"], socket: daemon.socketPath)
        #expect(callIn.status == 0, "\(callIn.error)")
        try await daemon.waitForPhase("incomingRinging")
        #expect(try daemon.status().call.peer == "Opa Henk")
        try daemon.button("press")
        try await daemon.waitForPhase("inCall")
        try daemon.button("long")
        try await daemon.waitForPhase("idle")

        // The record of that call reaches the server by its id, once, without waiting for
        // the uploader's interval (the end of the call kicks it).
        struct Call: Decodable { var id: String; var peerURI: String; var peerName: String? }
        let calls = try daemon.client.send(ControlRequest(cmd: .calls)).decodeResult([Call].self)
        let call = try #require(calls.first { $0.peerURI.hasPrefix("sip:opa@127.0.0.1") }, "\(calls)")
        try await daemon.waitFor("the call record at the server", timeout: .seconds(20)) {
            server.posts.contains { $0.id == call.id }
        }
        let posts = server.posts.filter { $0.id == call.id }
        #expect(posts.count == 1)
        #expect(posts.first?.path == "/api/v1/tablets/t1/calls")
        #expect(posts.first?.key == call.id)
        try await daemon.waitFor("an empty outbox", timeout: .seconds(10)) {
            let status = try runCtl(["provision", "status", "--json"], socket: daemon.socketPath)
            return status.output.contains("\"outboxLength\":0")
        }
        // The token is never written to the daemon's log.
        #expect(!daemon.log.contains(Self.token))
        #expect(await daemon.stop() == 0)

        // With the daemon stopped, status reads the database; sync says the daemon must run.
        let offline = try runCtl(["provision", "status", "--database", daemon.databasePath], socket: daemon.socketPath)
        #expect(offline.status == 0, "\(offline.error)")
        #expect(offline.output.contains("beeldzorgd is not running"))
        #expect(offline.output.split(separator: "\n").contains { $0.hasPrefix("contacts ") && $0.hasSuffix(" 1") }, "\(offline.output)")
        let offlineSync = try runCtl(["provision", "sync"], socket: daemon.socketPath)
        #expect(offlineSync.status == 3)
        #expect(offlineSync.error.contains("beeldzorgd must run"))
    }

    @Test func setupWritesTheTokenFileAndTheSection() throws {
        let daemon = try DaemonUnderTest()
        let directory = daemon.directory.path
        let given = directory + "/given-token"
        try "secret-abc\n".write(toFile: given, atomically: true, encoding: .utf8)
        let tokenPath = directory + "/credentials/provisioning-token"
        let before = try String(contentsOfFile: daemon.configPath, encoding: .utf8)

        // A plain-http URL is refused and nothing is written.
        let refused = try runCtl(["provision", "setup", "--url", "http://127.0.0.1/config", "--token-file", given,
                                  "--config", daemon.configPath, "--token-path", tokenPath], socket: nil)
        #expect(refused.status == 1)
        #expect(refused.error.contains("provisioning.url"), "\(refused.error)")
        #expect(try String(contentsOfFile: daemon.configPath, encoding: .utf8) == before)
        #expect(!FileManager.default.fileExists(atPath: tokenPath))

        let setup = try runCtl(["provision", "setup", "--url", "https://127.0.0.1:8443/api/v1/tablets/t1/config",
                                "--token-file", given, "--ca-file", "/etc/beeldzorg/ca.pem", "--interval-minutes", "5",
                                "--config", daemon.configPath, "--token-path", tokenPath], socket: nil)
        #expect(setup.status == 0, "\(setup.error)")
        #expect(try String(contentsOfFile: tokenPath, encoding: .utf8) == "secret-abc\n")
        let mode = try FileManager.default.attributesOfItem(atPath: tokenPath)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let section = try #require(try Configuration.load(path: daemon.configPath).provisioning)
        #expect(section.url == "https://127.0.0.1:8443/api/v1/tablets/t1/config")
        #expect(section.tokenFile == tokenPath && section.caFile == "/etc/beeldzorg/ca.pem" && section.intervalMinutes == 5)
        #expect(!setup.output.contains("secret-abc"))

        // A second run does not overwrite what is there.
        let again = try runCtl(["provision", "setup", "--url", "https://127.0.0.1/other", "--token", "x",
                                "--config", daemon.configPath, "--token-path", tokenPath], socket: nil)
        #expect(again.status == 1)
        #expect(try Configuration.load(path: daemon.configPath).provisioning?.url == section.url)
    }
}
