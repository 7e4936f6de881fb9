import Foundation
import TestSupport

/// What one built `beeldzorgd` under test needs in its directory `d`: the SIP password file
/// (0600), the button FIFO and `beeldzorgd.yaml` (database, control socket and prompts as the
/// tests use them). Returns the configuration's path. `caFile`, `policy`, `deadlineSeconds`
/// and `demoCentrale` are left out of the YAML when nil (the daemon's defaults); `centraleExtra`
/// are more `centrale:` lines (`key: value`, e.g. the callback URIs).
@discardableResult
func writeDaemonFiles(
    in d: String, password: String, domain: String, listenHost: String, transport: String, edgeProxy: String,
    caFile: String? = nil, posts: [String], policy: String? = nil, deadlineSeconds: Int? = nil,
    demoCentrale: Bool? = nil, centraleExtra: [String] = []
) throws -> String {
    try "\(password)\n".write(toFile: "\(d)/sip-password", atomically: true, encoding: .utf8)
    chmod("\(d)/sip-password", 0o600)
    mkfifo("\(d)/button", 0o600)
    let postLines = posts.enumerated().map { n, uri in "    - id: post-\(n + 1)\n      uri: \(uri)" }
    let centrale = (policy.map { ["  policy: \($0)"] } ?? []) + (deadlineSeconds.map { ["  deadline_seconds: \($0)"] } ?? [])
        + centraleExtra.map { "  \($0)" } + ["  posts:"] + postLines
    let lines = [
        "account:",
        "  user: tablet",
        "  domain: \(domain)",
        "  password_file: \(d)/sip-password",
        "  listen_host: \(listenHost)",
        "transport: \(transport)",
        "edge_proxies:",
        "  - \(edgeProxy)",
    ] + (caFile.map { ["ca_file: \($0)"] } ?? []) + [
        "srtp: required",
        "centrale:",
    ] + centrale + [
        "button:",
        "  device: fifo:\(d)/button",
        "camera:",
        "  device: test-pattern",
        "audio:",
        "  capture: tone:440",
        "  playback: \"null\"",
        "database: \(d)/beeldzorg.sqlite",
        "control_socket: \(d)/control.sock",
        "prompts: \(BuiltProducts.packageRoot.appendingPathComponent("prompts").path)",
    ] + (demoCentrale.map { ["demo_centrale: \($0)"] } ?? [])
    let path = "\(d)/beeldzorgd.yaml"
    try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// Checks `condition` every `interval` until it holds (true) or `timeout` has passed (false);
/// the caller throws its own error with what it knows.
func poll(every interval: Duration = .milliseconds(20), timeout: Duration, _ condition: () throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        try await Task.sleep(for: interval)
    }
    return false
}

/// Runs a short command with posix_spawn and returns its stdout; stderr goes to /dev/null.
/// posix_spawn and waitpid rather than Foundation's Process: its exit is noticed on a Dispatch
/// queue, which a loaded 2-core machine running blocked test threads can starve (seen here: a
/// finished beeldzorgctl left as a zombie and the test hanging).
func spawnAndRead(_ arguments: [String]) throws -> String {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { throw CommandFailed(command: "pipe", output: "") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addclose(&actions, fds[0])
    let argv = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, arguments[0], &actions, nil, argv, environ)
    close(fds[1])
    defer { close(fds[0]) }
    guard spawned == 0 else { throw CommandFailed(command: arguments[0], output: String(cString: strerror(spawned))) }
    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = read(fds[0], &buffer, buffer.count)
        if count > 0 { output += buffer[0..<count] } else if count == 0 || errno != EINTR { break }
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return String(decoding: output, as: UTF8.self)
}
