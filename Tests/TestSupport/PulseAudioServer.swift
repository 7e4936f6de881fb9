public import Foundation
import Glibc

/// A private PulseAudio server (a null sink, an anonymous socket in a temporary folder) whose
/// ALSA control plugin (`ctl.pulse`, libasound2-plugins) gives the tests a real simple mixer
/// on a host without a sound card: "Master" (playback volume and switch) and "Capture"
/// (capture volume and switch). amixer reads the same controls back.
public final class PulseAudioServer: @unchecked Sendable {
    public let directory: URL
    public let socket: String
    private let pid: pid_t
    private let stopped = NSLock()
    private var running = true

    public init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("beeldzorg-pulse-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        socket = directory.appendingPathComponent("native").path
        var environment = ProcessInfo.processInfo.environment
        environment["HOME"] = directory.path
        environment["XDG_RUNTIME_DIR"] = directory.path
        environment["PULSE_RUNTIME_PATH"] = directory.appendingPathComponent("runtime").path
        pid = try Self.spawn(["/usr/bin/pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disable-shm=yes",
                              "--use-pid-file=no", "-L", "module-null-sink",
                              "-L", "module-native-protocol-unix socket=\(socket) auth-anonymous=1"],
                             environment: environment, output: "/dev/null")
        let deadline = Date().addingTimeInterval(15)
        while !FileManager.default.fileExists(atPath: socket) {
            guard kill(pid, 0) == 0, Date() < deadline else {
                stop()
                throw TestSetupFailure("pulseaudio did not create \(socket)")
            }
            usleep(20_000)
        }
    }

    /// `PULSE_SERVER` for a client (amixer, the daemon) that should use this server.
    public var server: String { "unix:\(socket)" }

    /// A private ALSA configuration defining the control device `name` on this server.
    public func alsaConfiguration(name: String) -> String {
        "ctl.\(name) { type pulse\n server \"\(server)\" }\n"
    }

    /// Runs amixer on this server's `pulse` control device; its standard output.
    /// posix_spawn and waitpid, not Foundation's Process: its waitUntilExit never returned
    /// for amixer here (the amixer stayed a zombie), so neither child goes through it.
    public func amixer(_ arguments: [String]) throws -> String {
        let output = directory.appendingPathComponent("amixer-\(UUID().uuidString.prefix(8)).out").path
        var environment = ProcessInfo.processInfo.environment
        environment["PULSE_SERVER"] = server
        environment["HOME"] = directory.path
        let pid = try Self.spawn(["/usr/bin/amixer", "-D", "pulse"] + arguments, environment: environment, output: output)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: output)
        // WIFEXITED && WEXITSTATUS == 0
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            throw TestSetupFailure("amixer \(arguments.joined(separator: " ")) failed (wait status \(status))")
        }
        return text
    }

    /// posix_spawn with stdout to `output` and stderr to /dev/null; the child's PID.
    private static func spawn(_ argv: [String], environment: [String: String], output: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var cArguments = argv.map { strdup($0) } + [nil]
        var cEnvironment = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            cArguments.forEach { free($0) }
            cEnvironment.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cArguments, &cEnvironment)
        guard rc == 0 else { throw TestSetupFailure("\(argv[0]): posix_spawn failed (\(rc))") }
        return pid
    }

    public func stop() {
        stopped.lock()
        defer { stopped.unlock() }
        if running {
            running = false
            kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }
}
