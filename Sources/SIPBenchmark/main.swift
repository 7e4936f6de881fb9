// sip-benchmark: figures for issue 3 (see README, "SIP figures"), and the registering side of
// the network-namespace tests (`register`), which must run as its own process under
// `ip netns exec`. Not a test: it prints figures and asserts nothing.

import CallFlow
import DemoCentrale
import Foundation
import Glibc
import Logging
import Media
import NIOPosix
import SIP
import Synchronization

let arguments = Array(CommandLine.arguments.dropFirst())

func option(_ name: String) -> String? {
    guard let index = arguments.firstIndex(of: "--" + name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

func flag(_ name: String) -> Bool { arguments.contains("--" + name) }

/// One line to stdout, written at once (the parent reads it as it happens).
func say(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    bytes.withUnsafeBytes { _ = write(1, $0.baseAddress, $0.count) }
}

func usage() -> Never {
    let text = """
    usage: sip-benchmark invite [--iterations N]      button event → INVITE written (p50/p99)
           sip-benchmark setup [--iterations N]       press → 180 and → 200, 0 and 1 dead post
           sip-benchmark link [--iterations N] [--dns] link up → 200 OK to REGISTER (root; netns, Kamailio);
                                  --dns: the proxy by SRV from dnsmasq, then DNS failure → first retry
           sip-benchmark register --proxy URI --user U --domain D --password-file F --local-host IP
                                  [--transport udp|tcp] [--watch-network] [--backoff-ms N]
                                  [--keepalive-ms N] [--expires S] [--t1-ms N]
               registers and prints one line per event (for the tests and `link`)
    """
    let bytes = Array((text + "\n").utf8)
    bytes.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
    exit(64)
}

let verbose = flag("verbose")

func makeLogger() -> Logger {
    var logger = Logger(label: "sip-benchmark")
    logger.logLevel = verbose ? .debug : .warning
    return logger
}

switch arguments.first {
case "register": await register()
case "invite": await inviteBenchmark()
case "setup": await setupBenchmark()
case "link": await linkBenchmark()
default: usage()
}

/// Registers through one edge proxy and reports, one line each:
/// `ready PORT`, `registered PROXY EXPIRES`, `failed PROXY REASON`, `network CHANGE`.
/// Runs until stdin closes (the parent stops it by closing the pipe or by its PID).
func register() async {
    guard let proxy = option("proxy"), let user = option("user"), let domain = option("domain"),
          let passwordFile = option("password-file"), let localHost = option("local-host")
    else { usage() }
    let transport = UserAgentConfiguration.Transport(rawValue: option("transport") ?? "udp") ?? .udp
    let backoff = Duration.milliseconds(Int(option("backoff-ms") ?? "2000") ?? 2000)
    let keepalive = Duration.milliseconds(Int(option("keepalive-ms") ?? "25000") ?? 25000)
    let registration = RegistrationConfiguration(
        domain: domain, authUser: user, passwordFile: passwordFile,
        instanceID: "urn:uuid:9d0f2a4e-5b7c-4e21-8f3a-2c6b1d0e9a11", edgeProxies: [EdgeProxy(uri: proxy)],
        expires: Int(option("expires") ?? "600") ?? 600, keepaliveInterval: keepalive,
        pongTimeout: min(keepalive, .seconds(10)), baseBackoff: backoff, maxBackoff: backoff * 2)
    let agent = UserAgent(
        configuration: UserAgentConfiguration(
            localHost: localHost, user: user, timerT1: .milliseconds(Int(option("t1-ms") ?? "500") ?? 500),
            transport: transport, registration: registration),
        group: MultiThreadedEventLoopGroup.singleton, logger: makeLogger())
    var watcher: NetworkWatcher?
    if flag("watch-network") {
        let w = NetworkWatcher(logger: makeLogger())
        do { try w.start() } catch {
            say("error \(error)")
            exit(1)
        }
        watcher = w
    }
    let port: Int
    do { port = try await agent.start() } catch {
        say("error \(error)")
        exit(1)
    }
    say("ready \(port)")
    await withTaskGroup(of: Void.self) { group in
        group.addTask {
            for await event in agent.registrationEvents {
                switch event {
                case .registered(let proxy, let expires): say("registered \(proxy) \(expires)")
                case .failed(let proxy, let reason): say("failed \(proxy) \(reason)")
                }
            }
        }
        if let watcher {
            group.addTask {
                for await change in watcher.changes {
                    say("network \(change)")
                    await agent.networkChanged()
                }
            }
        }
        exitWhenStdinCloses()
        await group.next()
    }
}

/// The parent says stop by closing our stdin (or by SIGKILL to our PID). A thread of its own,
/// so the blocking read never holds one of the few cooperative threads.
func exitWhenStdinCloses() {
    var thread = pthread_t()
    pthread_create(&thread, nil, { _ in
        var byte: UInt8 = 0
        while read(0, &byte, 1) > 0 {}
        exit(0)
    }, nil)
    pthread_detach(thread)
}

