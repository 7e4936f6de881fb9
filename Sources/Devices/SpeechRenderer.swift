// Text to speech at run time, for prompts with a name or number in them: the same espeak-ng
// and sox steps, with the same settings, as prompts/render.sh uses at build time.

import Foundation
import Glibc

/// Renders a Dutch sentence to 48 kHz mono S16 audio with espeak-ng and sox.
///
/// The tools are started with posix_spawn, not Foundation's `Process`: with no file
/// descriptor free (issue 15, 3: a flood of connections took all 1,024) `Process` traps and
/// took the daemon with it, where posix_spawn returns EMFILE and this throws. Nothing here
/// needs a descriptor the caller does not get back: a private directory from mkdtemp, files
/// in it, removed by name.
public struct SpeechRenderer: Sendable {
    public var voice: String
    /// Words per minute (espeak-ng's default of 175 is too quick for our clients).
    public var wordsPerMinute: Int
    public var espeakPath: String
    public var soxPath: String
    public var sampleRate: Int

    public init(voice: String = "nl", wordsPerMinute: Int = 145, espeakPath: String = "/usr/bin/espeak-ng",
                soxPath: String = "/usr/bin/sox", sampleRate: Int = 48_000) {
        self.voice = voice
        self.wordsPerMinute = wordsPerMinute
        self.espeakPath = espeakPath
        self.soxPath = soxPath
        self.sampleRate = sampleRate
    }

    public func render(_ sentence: String) throws -> AudioClip {
        var template = Array((NSTemporaryDirectory() + "/beeldzorg-speech-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw DeviceError(.io, device: "speech renderer", detail: "cannot make a directory: \(String(cString: strerror(errno)))")
        }
        let dir = String(cString: made)
        let text = dir + "/text.txt"
        let spoken = dir + "/espeak.wav"
        let converted = dir + "/prompt.wav"
        let errors = dir + "/errors.txt"
        defer {
            for file in [text, spoken, converted, errors] { unlink(file) }
            rmdir(dir)
        }
        do {
            try Data(sentence.utf8).write(to: URL(fileURLWithPath: text))
        } catch {
            throw DeviceError(.io, device: "speech renderer", detail: "cannot write the sentence: \(error)")
        }
        try run(espeakPath, ["-v", voice, "-s", "\(wordsPerMinute)", "-w", spoken], stdin: text, stderr: errors)
        try run(soxPath, ["-D", spoken, "-r", "\(sampleRate)", "-c", "1", "-b", "16", "-e", "signed-integer", converted],
                stdin: "/dev/null", stderr: errors)
        return try WAVFile.read(path: converted)
    }

    /// Runs `tool` to its end with stdin and stderr from/to files, stdout to /dev/null.
    private func run(_ tool: String, _ arguments: [String], stdin: String, stderr: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv = ([tool] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, tool, &actions, nil, argv, environ)
        guard spawned == 0 else {
            let kind: DeviceError.Kind = spawned == ENOENT ? .notFound : .io
            throw DeviceError(kind, device: tool, detail: "cannot start: \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else {
                throw DeviceError(.io, device: tool, detail: "lost track of it: \(String(cString: strerror(errno)))")
            }
        }
        // WIFEXITED and WEXITSTATUS, which Swift does not import.
        let exited = status & 0x7F == 0
        let code = (status >> 8) & 0xFF
        guard exited, code == 0 else {
            let message = (try? String(contentsOfFile: stderr, encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            let how = exited ? "exit \(code)" : "signal \(status & 0x7F)"
            throw DeviceError(.io, device: tool, detail: "\(how): \(message)")
        }
    }
}
