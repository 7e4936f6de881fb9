// Reading and writing the WAV files prompts are stored in (RIFF, PCM, 16-bit).

import Glibc

/// A piece of mono S16 audio.
public struct AudioClip: Sendable, Equatable {
    public var sampleRate: Int
    public var samples: [Int16]

    public init(sampleRate: Int, samples: [Int16]) {
        self.sampleRate = sampleRate
        self.samples = samples
    }

    public var duration: Duration {
        .nanoseconds(Int64(samples.count) * 1_000_000_000 / Int64(max(sampleRate, 1)))
    }
}

/// A WAV file we cannot use, and why.
public struct AudioFileError: Error, Sendable, CustomStringConvertible {
    public var source: String
    public var message: String
    public var description: String { "\(source): \(message)" }
}

public enum WAVFile {
    public static func read(path: String) throws(AudioFileError) -> AudioClip {
        let bytes: [UInt8]
        do {
            bytes = try readWholeFile(path)
        } catch {
            throw AudioFileError(source: path, message: error.detail)
        }
        return try decode(bytes, source: path)
    }

    /// Decodes 16-bit PCM (plain or WAVE_FORMAT_EXTENSIBLE); stereo is mixed down to mono.
    /// A data chunk whose size runs past the end (as when a tool streams to a pipe and
    /// cannot go back to fix the header) is read up to the end.
    public static func decode(_ bytes: [UInt8], source: String) throws(AudioFileError) -> AudioClip {
        func fail(_ message: String) -> AudioFileError { AudioFileError(source: source, message: message) }
        func u16(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
        func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
        func tag(_ at: Int) -> String { String(decoding: bytes[at..<at + 4], as: UTF8.self) }

        guard bytes.count >= 12, tag(0) == "RIFF", tag(8) == "WAVE" else { throw fail("not a RIFF/WAVE file") }
        var offset = 12
        var format: (channels: Int, rate: Int, bits: Int)?
        while offset + 8 <= bytes.count {
            let id = tag(offset)
            let size = u32(offset + 4)
            let body = offset + 8
            switch id {
            case "fmt ":
                guard size >= 16, body + 16 <= bytes.count else { throw fail("short fmt chunk") }
                var code = u16(body)
                if code == 0xFFFE && size >= 40 && body + 26 <= bytes.count { code = u16(body + 24) }
                guard code == 1 else { throw fail("not PCM (format \(code))") }
                format = (u16(body + 2), u32(body + 4), u16(body + 14))
            case "data":
                guard let format else { throw fail("data before fmt") }
                guard format.bits == 16 else { throw fail("\(format.bits)-bit samples; need 16-bit") }
                guard format.channels == 1 || format.channels == 2 else { throw fail("\(format.channels) channels") }
                let end = min(body + size, bytes.count)
                let frameBytes = 2 * format.channels
                let frames = (end - body) / frameBytes
                var samples = [Int16](repeating: 0, count: frames)
                for i in 0..<frames {
                    let at = body + i * frameBytes
                    let left = Int16(bitPattern: UInt16(u16(at)))
                    if format.channels == 1 {
                        samples[i] = left
                    } else {
                        let right = Int16(bitPattern: UInt16(u16(at + 2)))
                        samples[i] = Int16((Int(left) + Int(right)) / 2)
                    }
                }
                return AudioClip(sampleRate: format.rate, samples: samples)
            default:
                break
            }
            offset = body + size + (size & 1)
        }
        throw fail("no data chunk")
    }

    /// A canonical 44-byte-header mono 16-bit PCM WAV.
    public static func encode(_ clip: AudioClip) -> [UInt8] {
        var out: [UInt8] = []
        func put32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { out += $0 } }
        func put16(_ v: Int) { withUnsafeBytes(of: UInt16(v).littleEndian) { out += $0 } }
        let dataBytes = clip.samples.count * 2
        out += Array("RIFF".utf8); put32(36 + dataBytes); out += Array("WAVE".utf8)
        out += Array("fmt ".utf8); put32(16); put16(1); put16(1)
        put32(clip.sampleRate); put32(clip.sampleRate * 2); put16(2); put16(16)
        out += Array("data".utf8); put32(dataBytes)
        for s in clip.samples { withUnsafeBytes(of: s.littleEndian) { out += $0 } }
        return out
    }
}

/// Reads a whole (small) file.
func readWholeFile(_ path: String) throws(DeviceError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
        let err = errno
        throw DeviceError(err == ENOENT ? .notFound : .io, device: path, detail: Posix.errorString(err))
    }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 { out += buf[0..<n]; continue }
        if n == 0 { return out }
        if errno == EINTR { continue }
        throw DeviceError(.io, device: path, detail: Posix.errorString(errno))
    }
}
