import Foundation
import Glibc
import Synchronization

// MARK: - link: link up → 200 OK to REGISTER, in a network namespace

/// Runs a command to completion; false (and its output) when it fails.
@discardableResult
func command(_ arguments: [String]) -> Bool {
    guard let process = Spawned(arguments) else { return false }
    close(process.stdinWrite)
    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = read(process.stdoutRead, &buffer, buffer.count)
        if count <= 0 { break }
        output += buffer[..<count]
    }
    close(process.stdoutRead)
    var status: Int32 = 0
    waitpid(process.pid, &status, 0)
    if status != 0 {
        say("command failed: \(arguments.joined(separator: " ")): \(String(decoding: output, as: UTF8.self))")
        return false
    }
    return true
}

/// Lines a child prints, each stamped when read.
final class ChildLines: Sendable {
    private let state = Mutex<(lines: [(String, ContinuousClock.Instant)], partial: String, consumed: Int)>(([], "", 0))

    init(fd: Int32) {
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = read(fd, &buffer, buffer.count)
                if count <= 0 { return }
                let now = ContinuousClock.now
                state.withLock { state in
                    state.partial += String(decoding: buffer[..<count], as: UTF8.self)
                    while let newline = state.partial.firstIndex(of: "\n") {
                        state.lines.append((String(state.partial[..<newline]), now))
                        state.partial = String(state.partial[state.partial.index(after: newline)...])
                    }
                }
            }
        }
        thread.start()
    }

    var text: String { state.withLock { $0.lines.map(\.0).joined(separator: "\n") } }

    func skipAll() { state.withLock { $0.consumed = $0.lines.count } }

    func next(_ prefix: String, timeout: Duration) async -> ContinuousClock.Instant? {
        await next(timeout: timeout) { $0.hasPrefix(prefix) }
    }

    /// The first line not yet consumed that `matches`, and when it was read.
    func next(timeout: Duration, _ matches: @escaping (String) -> Bool) async -> ContinuousClock.Instant? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let found = state.withLock { state -> ContinuousClock.Instant? in
                guard let index = state.lines[state.consumed...].firstIndex(where: { matches($0.0) }) else {
                    return nil
                }
                state.consumed = index + 1
                return state.lines[index].1
            }
            if let found { return found }
            try? await Task.sleep(for: .milliseconds(2))
        }
        return nil
    }
}


/// A process started with posix_spawn: an empty signal mask (so SIGTERM works), stdin and
/// stdout as pipes. Foundation's Process is not used for long-running children here: its
/// reaper thread was seen blocking in wait4 on one child while another's waitUntilExit hung.
final class Spawned: @unchecked Sendable {
    let pid: pid_t
    let stdinWrite: Int32
    let stdoutRead: Int32

    init?(_ arguments: [String]) {
        var input: [Int32] = [-1, -1]
        var output: [Int32] = [-1, -1]
        guard pipe(&input) == 0, pipe(&output) == 0 else { return nil }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, output[1], 2)
        for fd in input + output { posix_spawn_file_actions_addclose(&actions, fd) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var cArguments = arguments.map { strdup($0) } + [nil]
        var child: pid_t = 0
        let result = posix_spawn(&child, arguments[0], &actions, &attributes, &cArguments, environ)
        for pointer in cArguments { free(pointer) }
        posix_spawn_file_actions_destroy(&actions)
        posix_spawnattr_destroy(&attributes)
        close(input[0])
        close(output[1])
        guard result == 0 else {
            close(input[1])
            close(output[0])
            return nil
        }
        pid = child
        stdinWrite = input[1]
        stdoutRead = output[0]
    }

    /// Closes its stdin, then SIGTERM, then SIGKILL, and reaps it.
    func stop() {
        close(stdinWrite)
        defer { close(stdoutRead) }
        var status: Int32 = 0
        for attempt in 0..<300 {
            if waitpid(pid, &status, WNOHANG) == pid { return }
            if attempt == 20 { kill(pid, SIGTERM) }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
    }
}

func kamailioConfig(host: String, port: Int, directory: String, password: String) -> String {
    """
    #!KAMAILIO
    debug=1
    log_stderror=yes
    children=1
    auto_aliases=no
    listen=udp:\(host):\(port)
    mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
    loadmodule "kex.so"
    loadmodule "corex.so"
    loadmodule "tm.so"
    loadmodule "sl.so"
    loadmodule "pv.so"
    loadmodule "textops.so"
    loadmodule "siputils.so"
    loadmodule "usrloc.so"
    loadmodule "registrar.so"
    loadmodule "auth.so"
    loadmodule "stun.so"
    modparam("usrloc", "db_mode", 0)
    request_route {
        if (is_method("REGISTER")) {
            if (!pv_www_authenticate("beeldzorg.test", "\(password)", "0")) {
                www_challenge("beeldzorg.test", "1");
                exit;
            }
            if (!save("location")) { sl_reply_error(); }
            exit;
        }
        sl_send_reply("404", "Not Here");
    }
    """
}

func linkBenchmark() async {
    let rounds = iterations(default: 10)
    guard getuid() == 0 else {
        say("link needs root (it creates a network namespace and a veth pair)")
        exit(1)
    }
    let ip = "/usr/sbin/ip"
    let tag = String(UInt32.random(in: 0..<0xFFFFFF), radix: 16)
    let namespace = "bzbench-\(tag)"
    let hostInterface = "bzbh\(tag)"
    let tabletInterface = "bzbt\(tag)"
    let subnet = "10.\(Int.random(in: 128...191)).\(Int.random(in: 0...255))"
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sip-benchmark-\(tag)").path
    try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let password = "bench-\(tag)"
    try? "\(password)\n".write(toFile: "\(directory)/password", atomically: true, encoding: .utf8)
    // --dns: the edge proxy is a name (`sip:edge.bench.test`, SRV `_sip._udp`) answered by
    // Debian's dnsmasq inside the namespace (issue 16), so link up → registered includes the
    // re-resolution a network change starts; then DNS failure → first retry.
    let dns = flag("dns")
    let resolverDirectory = "/etc/netns/\(namespace)"
    var kamailio: Spawned?
    var child: Spawned?
    var resolver: Spawned?
    defer {
        child?.stop()
        resolver?.stop()
        kamailio?.stop()
        if dns { try? FileManager.default.removeItem(atPath: resolverDirectory) }
        command([ip, "netns", "del", namespace])
        try? FileManager.default.removeItem(atPath: directory)
    }
    guard command([ip, "netns", "add", namespace]),
          command([ip, "link", "add", hostInterface, "type", "veth", "peer", "name", tabletInterface]),
          command([ip, "link", "set", tabletInterface, "netns", namespace]),
          command([ip, "addr", "add", "\(subnet).1/30", "dev", hostInterface]),
          command([ip, "link", "set", hostInterface, "up"]),
          command([ip, "netns", "exec", namespace, "ip", "addr", "add", "\(subnet).2/30", "dev", tabletInterface]),
          command([ip, "netns", "exec", namespace, "ip", "link", "set", "lo", "up"]),
          command([ip, "netns", "exec", namespace, "ip", "link", "set", tabletInterface, "up"])
    else { return }

    let port = 5060
    try? kamailioConfig(host: "\(subnet).1", port: port, directory: directory, password: password)
        .write(toFile: "\(directory)/kamailio.cfg", atomically: true, encoding: .utf8)
    kamailio = Spawned(["/usr/sbin/kamailio", "-DD", "-E", "-f", "\(directory)/kamailio.cfg", "-Y", directory,
                        "-P", "\(directory)/kamailio.pid", "-m", "32", "-M", "8", "-w", directory])
    guard let started = kamailio else {
        say("cannot start kamailio")
        return
    }
    _ = ChildLines(fd: started.stdoutRead)  // drained, not read
    try? await Task.sleep(for: .milliseconds(500))

    // The registering side: this very executable, `register` mode, inside the namespace, with
    // the daemon's defaults (keepalive 25 s, T1 500 ms, backoff 2 s) and the netlink watcher.
    func startResolver(_ records: [String]) -> ChildLines? {
        resolver?.stop()
        resolver = Spawned([ip, "netns", "exec", namespace, "/usr/sbin/dnsmasq", "-k", "--conf-file=/dev/null",
                            "--no-resolv", "--no-hosts", "--pid-file=", "--listen-address=127.0.0.1",
                            "--bind-interfaces", "--port=53", "--user=root", "--local-ttl=60", "--log-queries",
                            "--log-facility=-"] + records)
        return resolver.map { ChildLines(fd: $0.stdoutRead) }
    }
    var proxy = "sip:\(subnet).1:\(port)"
    if dns {
        // `ip netns exec` bind-mounts this over /etc/resolv.conf for what it runs.
        try? FileManager.default.createDirectory(atPath: resolverDirectory, withIntermediateDirectories: true)
        try? "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
            .write(toFile: "\(resolverDirectory)/resolv.conf", atomically: true, encoding: .utf8)
        guard let log = startResolver(["--srv-host=_sip._udp.edge.bench.test,edge1.bench.test,\(port),10,0",
                                       "--host-record=edge1.bench.test,\(subnet).1"]),
              await log.next(timeout: .seconds(5), { $0.contains("started") }) != nil
        else {
            say("cannot start dnsmasq (apt-get install dnsmasq-base)")
            return
        }
        proxy = "sip:edge.bench.test"
    }
    let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
    child = Spawned([ip, "netns", "exec", namespace, me, "register", "--proxy", proxy,
                     "--user", "tablet", "--domain", "beeldzorg.test", "--password-file", "\(directory)/password",
                     "--local-host", "\(subnet).2", "--watch-network"])
    guard let registering = child else {
        say("cannot start the registering side")
        return
    }
    let lines = ChildLines(fd: registering.stdoutRead)
    guard await lines.next("registered", timeout: .seconds(10)) != nil else {
        say("never registered; the registering side said:\n\(lines.text)")
        return
    }
    let outage = Duration.seconds(Int(option("outage-seconds") ?? "3") ?? 3)
    var samples: [Double] = []
    for _ in 0..<rounds {
        command([ip, "netns", "exec", namespace, "ip", "link", "set", tabletInterface, "down"])
        try? await Task.sleep(for: outage)
        lines.skipAll()
        let up = ContinuousClock.now
        command([ip, "netns", "exec", namespace, "ip", "link", "set", tabletInterface, "up"])
        if let registered = await lines.next("registered", timeout: .seconds(30)) {
            samples.append(milliseconds(registered - up))
        } else {
            say("not registered within 30 s of link up")
        }
        try? await Task.sleep(for: .seconds(1))
    }
    say("link up → 200 OK to REGISTER (UDP, Kamailio with digest auth on the other end of a veth pair, "
        + "link down for \(outage), netlink watcher on, daemon defaults\(dns ? ", proxy by SRV from dnsmasq" : "")): "
        + summary(samples))
    if dns {
        // DNS that answers "no such name": each failed lookup (SRV, then A and AAAA of the
        // name) is followed by the next after the retry delay (1 s for the first ten).
        guard let log = startResolver(["--address=/bench.test/"]),
              await log.next(timeout: .seconds(5), { $0.contains("started") }) != nil
        else {
            say("cannot restart dnsmasq")
            return
        }
        // A network change asks DNS again at once (the cached answer's TTL is 60 s).
        command([ip, "netns", "exec", namespace, "ip", "link", "set", tabletInterface, "down"])
        command([ip, "netns", "exec", namespace, "ip", "link", "set", tabletInterface, "up"])
        var retries: [Double] = []
        for _ in 0..<min(rounds, 9) {
            guard await log.next(timeout: .seconds(10), { $0.contains("query[AAAA] edge.bench.test") }) != nil,
                  let failed = await log.next(timeout: .seconds(5), { $0.contains("edge.bench.test is NXDOMAIN") }),
                  let retried = await log.next(timeout: .seconds(10), { $0.contains("query[SRV] _sip._udp.edge.bench.test") })
            else {
                say("no retry seen; dnsmasq said:\n\(log.text.suffix(2000))")
                break
            }
            retries.append(milliseconds(retried - failed))
        }
        say("DNS failure (NXDOMAIN for SRV, A and AAAA) → first retry: \(summary(retries))")
    }
    say("host: \(ProcessInfo.processInfo.activeProcessorCount) cores, load \(hostLoad()), debug build: \(isDebugBuild)")
}
