// Text to speech at run time, for prompts with a name or number in them: the same espeak-ng
// and sox steps, with the same settings, as prompts/render.sh uses at build time.

import Foundation

/// Renders a Dutch sentence to 48 kHz mono S16 audio with espeak-ng and sox.
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
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("beeldzorg-speech-\(UUID().uuidString)")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: dir) }
        let spoken = dir.appendingPathComponent("espeak.wav").path
        let converted = dir.appendingPathComponent("prompt.wav").path

        try run(espeakPath, ["-v", voice, "-s", "\(wordsPerMinute)", "-w", spoken], stdin: sentence)
        try run(soxPath, ["-D", spoken, "-r", "\(sampleRate)", "-c", "1", "-b", "16", "-e", "signed-integer", converted])
        return try WAVFile.read(path: converted)
    }

    private func run(_ tool: String, _ arguments: [String], stdin text: String? = nil) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        let input = Pipe()
        process.standardInput = text == nil ? FileHandle.nullDevice : input
        do {
            try process.run()
        } catch {
            throw DeviceError(.notFound, device: tool, detail: "cannot start: \(error)")
        }
        if let text {
            input.fileHandleForWriting.write(Data(text.utf8))
            try? input.fileHandleForWriting.close()
        }
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let detail = String(decoding: message, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw DeviceError(.io, device: tool, detail: "exit \(process.terminationStatus): \(detail)")
        }
    }
}
