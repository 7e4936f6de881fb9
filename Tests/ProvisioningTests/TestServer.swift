import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Python's http.server with ssl on 127.0.0.1, started for one test and stopped by PID.
/// It serves `doc.json` from its directory (re-read on every request) at /doc with a
/// content-derived ETag and 304 on a matching If-None-Match; other paths misbehave on
/// purpose (see `script`).
final class TestServer {
    typealias Failure = TestSetupFailure

    static let token = "test-token-1234"

    let directory: String
    let pki: TestPKI
    private(set) var port: Int
    private var process: Process

    init() throws {
        directory = NSTemporaryDirectory() + "beeldzorg-prov-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        pki = try TestPKI(directory: directory)
        try Self.script.write(toFile: directory + "/server.py", atomically: true, encoding: .utf8)
        (process, port) = try Self.launch(directory: directory, port: 0)
    }

    /// Starts the Python server; it prints "PORT <n>" once it listens.
    private static func launch(directory: String, port: Int) throws -> (Process, Int) {
        try launchPortPrintingServer([directory + "/server.py", directory, Self.token, String(port)])
    }

    /// Stops the server process (by PID) but keeps its directory and port: connections to
    /// it are refused until ``bringUp()``.
    func takeDown() { killTestServer(process) }

    /// Starts the server again on the same port, with the same files.
    func bringUp() throws {
        takeDown()
        (process, port) = try Self.launch(directory: directory, port: port)
    }

    /// One POST the server received, in arrival order (from `posts.log`).
    struct Post: Equatable {
        var status: Int
        var path: String
        var idempotencyKey: String
        /// The `id` field of the JSON body.
        var bodyID: String
    }

    var posts: [Post] {
        guard let text = try? String(contentsOfFile: directory + "/posts.log", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 4, let status = Int(fields[0]) else { return nil }
            return Post(status: status, path: fields[1], idempotencyKey: fields[2], bodyID: fields[3])
        }
    }

    /// The next `count` POSTs are answered 500.
    func failNextPosts(_ count: Int) throws {
        try String(count).write(toFile: directory + "/post-failures", atomically: true, encoding: .utf8)
    }

    /// While set, every POST is answered `status` (e.g. 422).
    func answerPosts(with status: Int?) throws {
        let file = directory + "/post-status"
        if let status {
            try String(status).write(toFile: file, atomically: true, encoding: .utf8)
        } else {
            try? FileManager.default.removeItem(atPath: file)
        }
    }

    func url(_ path: String) -> String { "https://127.0.0.1:\(port)\(path)" }

    func serve(_ document: String) throws {
        try document.write(toFile: directory + "/doc.json", atomically: true, encoding: .utf8)
    }

    func stop() {
        killTestServer(process)
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit { stop() }

    static let script = #"""
        import hashlib, http.server, json, os, ssl, sys, threading, time

        directory, token = sys.argv[1], sys.argv[2]
        port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
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
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def do_GET(self):
                if self.headers.get("Authorization") != "Bearer " + token:
                    return self.send(401, b"{}")
                path = self.path
                if path == "/doc":
                    with open(os.path.join(directory, "doc.json"), "rb") as f:
                        body = f.read()
                    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                    if self.headers.get("If-None-Match") == etag:
                        self.send_response(304)
                        self.send_header("ETag", etag)
                        self.send_header("Connection", "close")
                        self.end_headers()
                        self.close_connection = True
                        return
                    return self.send(200, body, [("ETag", etag), ("Content-Type", "application/json")])
                if path == "/status500":
                    return self.send(500, b"oops")
                if path == "/truncated":
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.write(b'{"schemaVersion": 1, "contacts": [')
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if path == "/oversized":
                    return self.send(200, b" " * (2 * 1024 * 1024) + b"{}")
                if path == "/oversized-stream":
                    # No Content-Length: the body ends when the connection closes.
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for _ in range(64):
                        self.wfile.write(b" " * 32768)
                    self.close_connection = True
                    return
                if path == "/slow":
                    time.sleep(5)
                    return self.send(200, b"{}")
                if path == "/slow-body":
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    for _ in range(100):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.1)
                    self.close_connection = True
                    return
                self.send(404)

            # The upload outbox: every POST is logged as "STATUS PATH IDEMPOTENCY-KEY BODY-ID".
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                key = self.headers.get("Idempotency-Key", "-") or "-"
                try:
                    body_id = str(json.loads(body).get("id", "-"))
                except Exception:
                    body_id = "-"
                with lock:
                    if self.headers.get("Authorization") != "Bearer " + token:
                        status = 401
                    elif os.path.exists(os.path.join(directory, "post-status")):
                        with open(os.path.join(directory, "post-status")) as f:
                            status = int(f.read())
                    else:
                        status = 201
                        failures = os.path.join(directory, "post-failures")
                        if os.path.exists(failures):
                            with open(failures) as f:
                                left = int(f.read() or "0")
                            if left > 0:
                                status = 500
                                with open(failures, "w") as f:
                                    f.write(str(left - 1))
                    with open(os.path.join(directory, "posts.log"), "a") as f:
                        f.write("%d %s %s %s\n" % (status, self.path, key, body_id))
                self.send(status, b"{}", [("Content-Type", "application/json")])

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that gives up mid-answer is part of the tests

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(os.path.join(directory, "server.pem"), os.path.join(directory, "server.key"))
        server = Server(("127.0.0.1", port), Handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        print("PORT", server.server_address[1], flush=True)
        server.serve_forever()
        """#
}
