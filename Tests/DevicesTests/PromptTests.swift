import Devices
import Foundation
import Testing

private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
private let promptsDir = repoRoot.appendingPathComponent("prompts").path
private let haveSpeechTools = FileManager.default.isExecutableFile(atPath: "/usr/bin/espeak-ng")
    && FileManager.default.isExecutableFile(atPath: "/usr/bin/sox")

private func rms(_ samples: [Int16]) -> Double {
    guard !samples.isEmpty else { return 0 }
    let sum = samples.reduce(0.0) { $0 + Double($1) * Double($1) }
    return (sum / Double(samples.count)).squareRoot()
}

@Suite("Prompt catalog")
struct PromptCatalogTests {
    @Test func theShippedDutchCatalogLoadsWithTheAgreedTexts() throws {
        let catalog = try PromptCatalog(contentsOf: promptsDir + "/nl.txt")
        typealias K = PromptCatalog.Key
        #expect(catalog.template(K.callingCentrale) == "Ik bel de beeldzorgcentrale.")
        #expect(catalog.template(K.stillTrying) == "Even geduld, ik probeer het nog een keer.")
        #expect(catalog.template(K.connected) == "U bent verbonden.")
        #expect(catalog.template(K.callEnded) == "Het gesprek is beëindigd.")
        #expect(catalog.template(K.centraleUnreachable) == "De beeldzorgcentrale is nu niet bereikbaar.")
        #expect(catalog.template(K.noNetwork) == "Er is geen internet. Ik blijf het proberen.")
        #expect(catalog.placeholders(of: K.incomingCall) == ["naam"])
        #expect(catalog.placeholders(of: K.autoAnswer) == ["seconden"])
        #expect(try catalog.text(K.incomingCall, values: ["naam": "Anja"]) == "Anja belt u. Druk op de knop om op te nemen.")
        #expect(try catalog.text(K.autoAnswer, values: ["seconden": "10"]) == "Over 10 seconden neem ik automatisch op.")
        for key in K.required { #expect(catalog.template(key) != nil, "\(key)") }
    }

    @Test(arguments: [
        ("connected = Hallo.\nzomaar een zin\n", 2, "expected 'key = text'"),
        ("# uitleg\n\nconnected = Hallo.\nconnected = Nog eens.\n", 4, "defined twice (first on line 3)"),
        ("connected = {naam belt u.\n", 1, "never closed"),
        ("connected = naam} belt u.\n", 1, "without"),
        ("connected = {twee woorden} belt.\n", 1, "single word"),
        ("Connected = Hallo.\n", 1, "lower-case"),
        ("connected =   \n", 1, "has no text"),
    ])
    func errorsNameTheLine(text: String, line: Int, fragment: String) {
        do {
            _ = try PromptCatalog(parsing: text, source: "nl.txt", required: [])
            Issue.record("accepted a broken catalog")
        } catch {
            #expect(error.line == line)
            #expect(error.description.hasPrefix("nl.txt:\(line): "))
            #expect(error.message.contains(fragment), "\(error)")
        }
    }

    @Test func missingRequiredPromptsAreNamed() {
        do {
            _ = try PromptCatalog(parsing: "connected = Hallo.\n", source: "nl.txt")
            Issue.record("accepted an incomplete catalog")
        } catch {
            #expect(error.message.contains("calling_centrale"))
            #expect(!error.message.contains("connected"))
        }
    }

    @Test func fillingInNeedsEveryValue() throws {
        let catalog = try PromptCatalog(parsing: "hi = {naam} en {naam}, over {seconden} s.\r\n", source: "t", required: [])
        #expect(try catalog.text("hi", values: ["naam": "Jo", "seconden": "5"]) == "Jo en Jo, over 5 s.")
        #expect(throws: PromptCatalogError.self) { try catalog.text("hi", values: ["naam": "Jo"]) }
        #expect(throws: PromptCatalogError.self) { try catalog.text("nope") }
    }
}

@Suite("WAV files")
struct WAVFileTests {
    @Test func roundTripsMonoS16() throws {
        let clip = AudioClip(sampleRate: 48_000, samples: [0, 1, -1, .max, .min, 1234, -4321])
        let bytes = WAVFile.encode(clip)
        #expect(bytes.count == 44 + 14)
        #expect(try WAVFile.decode(bytes, source: "t") == clip)
    }

    @Test func skipsUnknownChunksMixesStereoAndToleratesStreamedSizes() throws {
        var bytes = Array("RIFF".utf8) + [0xFF, 0xFF, 0xFF, 0xFF] + Array("WAVE".utf8)
        // A LIST chunk with an odd size (padded), then fmt (stereo), then data claiming more than exists.
        bytes += Array("LIST".utf8) + [3, 0, 0, 0] + [1, 2, 3, 0]
        bytes += Array("fmt ".utf8) + [16, 0, 0, 0] + [1, 0, 2, 0] + [0x22, 0x56, 0, 0] + [0x88, 0x58, 1, 0] + [4, 0, 16, 0]
        bytes += Array("data".utf8) + [0xFF, 0xFF, 0xFF, 0x7F]
        for (l, r) in [(Int16(100), Int16(300)), (-200, -400), (1, 2)] {
            withUnsafeBytes(of: l.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: r.littleEndian) { bytes += $0 }
        }
        bytes += [7]  // a stray byte, not a whole frame
        let clip = try WAVFile.decode(bytes, source: "t")
        #expect(clip.sampleRate == 22050)
        #expect(clip.samples == [200, -300, 1])
    }

    @Test func rejectsWhatItCannotPlay() {
        var float = WAVFile.encode(AudioClip(sampleRate: 8000, samples: [1, 2]))
        float[20] = 3  // WAVE_FORMAT_IEEE_FLOAT
        #expect(throws: AudioFileError.self) { try WAVFile.decode(float, source: "t") }
        #expect(throws: AudioFileError.self) { try WAVFile.decode(Array("hello world!".utf8), source: "t") }
        #expect(throws: AudioFileError.self) { try WAVFile.read(path: "/nonexistent/x.wav") }
    }
}

/// Issue 15, 3: out of file descriptors the tablet must still speak its fixed prompts. Once
/// warmed up, the library holds them in memory: no WAV is opened and no espeak-ng started
/// again, however many names were spoken since.
@Suite("Prompts held in memory")
struct PromptMemoryTests {
    @Test func warmedUpPromptsPlayWithoutTheirFilesOrTheRenderer() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let catalog = try PromptCatalog(contentsOf: promptsDir + "/nl.txt")
        let fixed = catalog.spokenKeys.filter { catalog.placeholders(of: $0).isEmpty }
        for (index, key) in fixed.enumerated() {
            let clip = AudioClip(sampleRate: 48_000, samples: [Int16](repeating: Int16(index + 1), count: 480))
            try Data(WAVFile.encode(clip)).write(to: URL(fileURLWithPath: dir.file(key + ".wav")))
        }
        // A renderer that cannot run: the fixed prompts must come from the files, then memory.
        let library = PromptLibrary(catalog: catalog, wavDirectory: dir.path,
                                    renderer: SpeechRenderer(espeakPath: "/nonexistent/espeak-ng"))
        try library.warmUp()
        #expect(library.fixedPromptsInMemory == fixed.count)
        dir.cleanup()  // the WAVs are gone, as if nothing could be opened any more
        for _ in 0..<40 {  // more named sentences than the bounded cache keeps
            #expect(throws: DeviceError.self) { try library.clip(PromptCatalog.Key.incomingCall, values: ["naam": "Jo"]) }
        }
        for (index, key) in fixed.enumerated() {
            #expect(try library.clip(key).samples.first == Int16(index + 1), "\(key)")
        }
    }

    @Test func warmUpTriesEveryPromptAndReportsAFailure() throws {
        let catalog = try PromptCatalog(contentsOf: promptsDir + "/nl.txt")
        let library = PromptLibrary(catalog: catalog, wavDirectory: "/nonexistent",
                                    renderer: SpeechRenderer(espeakPath: "/nonexistent/espeak-ng"))
        #expect(throws: DeviceError.self) { try library.warmUp() }
        #expect(library.fixedPromptsInMemory == 0)
    }
}

@Suite("Speech rendering", .enabled(if: haveSpeechTools, "needs espeak-ng and sox"))
struct SpeechRenderingTests {
    @Test func runtimeRenderingMatchesTheBuildScript() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let sentence = "Anja belt u. Druk op de knop om op te nemen."
        let script = Process()
        script.executableURL = URL(fileURLWithPath: promptsDir + "/render.sh")
        script.arguments = ["--text", sentence, dir.file("script.wav")]
        try script.run()
        script.waitUntilExit()
        #expect(script.terminationStatus == 0)

        let fromScript = try WAVFile.read(path: dir.file("script.wav"))
        let fromSwift = try SpeechRenderer().render(sentence)
        #expect(fromSwift.sampleRate == 48_000)
        #expect(fromSwift.duration > .seconds(1))
        #expect(rms(fromSwift.samples) > 300, "speech, not silence")
        let same = fromSwift == fromScript  // compared outside #expect: no 100k-sample dump
        #expect(same, "the daemon and render.sh must produce the same audio")
    }

    @Test func scriptRendersEveryFixedPromptAndSkipsPlaceholders() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let script = Process()
        script.executableURL = URL(fileURLWithPath: promptsDir + "/render.sh")
        script.arguments = [promptsDir + "/nl.txt", dir.path]
        script.standardOutput = FileHandle.nullDevice
        try script.run()
        script.waitUntilExit()
        #expect(script.terminationStatus == 0)

        let catalog = try PromptCatalog(contentsOf: promptsDir + "/nl.txt")
        let library = PromptLibrary(catalog: catalog, wavDirectory: dir.path,
                                    renderer: SpeechRenderer(espeakPath: "/nonexistent/espeak-ng"))
        #expect(catalog.keys.contains { $0.hasPrefix("screen_") } && catalog.spokenKeys.count < catalog.keys.count)
        for key in catalog.keys {
            // Screen text (screen_*) is drawn, never spoken: no WAV for it.
            let exists = FileManager.default.fileExists(atPath: dir.file(key + ".wav"))
            #expect(exists == (catalog.placeholders(of: key).isEmpty && !key.hasPrefix("screen_")), "\(key)")
        }
        // The library uses the rendered files (its renderer cannot run).
        try library.warmUp()
        let connected = try library.clip(PromptCatalog.Key.connected)
        #expect(connected.sampleRate == 48_000)
        #expect(rms(connected.samples) > 300)
        #expect(throws: DeviceError.self) { try library.clip(PromptCatalog.Key.incomingCall, values: ["naam": "Jo"]) }
    }

    @Test func installedLayoutIsWhatTheScriptProducesByDefault() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        try FileManager.default.copyItem(atPath: promptsDir + "/nl.txt", toPath: dir.file("nl.txt"))
        let script = Process()
        script.executableURL = URL(fileURLWithPath: promptsDir + "/render.sh")
        script.arguments = [dir.file("nl.txt")]
        script.standardOutput = FileHandle.nullDevice
        try script.run()
        script.waitUntilExit()
        #expect(script.terminationStatus == 0)
        #expect(FileManager.default.fileExists(atPath: dir.file("wav/nl/call_ended.wav")))
        let library = try PromptLibrary(promptsDirectory: dir.path, language: "nl",
                                        renderer: SpeechRenderer(espeakPath: "/nonexistent/espeak-ng"))
        #expect(try library.clip(PromptCatalog.Key.callEnded).sampleRate == 48_000)
    }

    @Test func libraryRendersSentencesWithANameAtRunTimeAndCachesThem() throws {
        let catalog = try PromptCatalog(contentsOf: promptsDir + "/nl.txt")
        let library = PromptLibrary(catalog: catalog, wavDirectory: nil)
        let first = try library.clip(PromptCatalog.Key.incomingCall, values: ["naam": "Mohammed"])
        let again = try library.clip(PromptCatalog.Key.incomingCall, values: ["naam": "Mohammed"])
        let other = try library.clip(PromptCatalog.Key.incomingCall, values: ["naam": "Els"])
        let cached = first == again, distinct = first != other
        #expect(cached)
        #expect(distinct)
        #expect(first.duration > .seconds(2))
    }
}
