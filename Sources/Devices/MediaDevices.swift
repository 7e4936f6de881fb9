// The media-device contracts shared by Devices (real hardware and fakes) and Media
// (encoders, decoders, RTP). No C type appears here: each adapter hides its C library.

/// One picture in I420 (8-bit planar YUV 4:2:0): a full-size Y plane followed by
/// quarter-size U and V planes, each tightly packed (stride == width for Y, width/2 for U, V).
public struct VideoFrame: Sendable, Equatable {
    public var width: Int
    public var height: Int
    /// Y plane, then U, then V; `width * height * 3 / 2` bytes.
    public var planes: [UInt8]
    /// Capture time relative to the start of the stream, for RTP timestamps.
    public var timestamp: Duration

    public init(width: Int, height: Int, planes: [UInt8], timestamp: Duration) {
        precondition(width > 0 && height > 0 && width % 2 == 0 && height % 2 == 0, "I420 needs even sizes")
        precondition(planes.count == width * height * 3 / 2, "I420 buffer has the wrong size")
        self.width = width
        self.height = height
        self.planes = planes
        self.timestamp = timestamp
    }

    public var lumaCount: Int { width * height }
    public var chromaCount: Int { (width / 2) * (height / 2) }
}

/// What the call asks of a camera: opened when a call starts, closed when it ends.
public struct CameraFormat: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var framesPerSecond: Int

    public init(width: Int = 640, height: Int = 480, framesPerSecond: Int = 25) {
        self.width = width
        self.height = height
        self.framesPerSecond = framesPerSecond
    }
}

/// A source of video frames (a V4L2 camera, or a synthetic test pattern).
///
/// `nextFrame()` blocks until a frame is ready, paced at the negotiated rate, and is called
/// from one dedicated capture thread; `close()` may be called from another thread and makes
/// a blocked `nextFrame()` return or throw promptly.
public protocol CameraSource: AnyObject, Sendable {
    /// Opens the device; returns the format actually negotiated.
    func open(_ requested: CameraFormat) throws -> CameraFormat
    func nextFrame() throws -> VideoFrame
    func close()
}

/// The audio format used everywhere between devices and codecs: S16 little-endian, mono.
public struct AudioFormat: Sendable, Equatable {
    public var sampleRate: Int
    public var channels: Int
    /// Samples per channel in one period handed across the protocol (20 ms at 48 kHz = 960).
    public var frameSamples: Int

    public init(sampleRate: Int = 48_000, channels: Int = 1, frameSamples: Int = 960) {
        self.sampleRate = sampleRate
        self.channels = channels
        self.frameSamples = frameSamples
    }
}

/// A microphone (ALSA capture, a file, a tone generator). `read()` blocks for one period
/// and returns exactly `frameSamples * channels` samples.
public protocol AudioSource: AnyObject, Sendable {
    func open(_ format: AudioFormat) throws
    func read() throws -> [Int16]
    func close()
}

/// A speaker (ALSA playback, a file, a recorder for tests).
public protocol AudioSink: AnyObject, Sendable {
    func open(_ format: AudioFormat) throws
    func write(_ samples: [Int16]) throws
    func close()
}

/// Where decoded remote video goes (the screen; a recorder in tests).
public protocol VideoSink: AnyObject, Sendable {
    func show(_ frame: VideoFrame)
}

/// A device failed in a way the call should know about (vanished camera, lost sound card).
public struct DeviceError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable { case notFound, busy, vanished, unsupported, io }
    public var kind: Kind
    public var device: String
    public var detail: String

    public init(_ kind: Kind, device: String, detail: String) {
        self.kind = kind
        self.device = device
        self.detail = detail
    }

    public var description: String { "\(device): \(kind.rawValue): \(detail)" }
}
