// A synthetic camera for machines without /dev/video, for tests and the benchmark.
import Synchronization

/// Moving colour bars with the frame number drawn as a row of black/white blocks (16 bits,
/// most significant first) near the bottom, so a receiver can read back which frame it got.
/// Paced at the format's frame rate unless `paced` is false; `failAfter` makes the camera
/// vanish after that many frames, as an unplugged USB camera would.
public final class TestPatternCamera: CameraSource {
    private struct State {
        var format: CameraFormat? = nil
        var frameNumber = 0
        var start: ContinuousClock.Instant? = nil
        var openCount = 0
    }

    public static let counterBits = 16

    public let paced: Bool
    public let failAfter: Int?
    private let state = Mutex(State())
    private let closed = Atomic<Bool>(false)

    public init(paced: Bool = true, failAfter: Int? = nil) {
        self.paced = paced
        self.failAfter = failAfter
    }

    public var isOpen: Bool { state.withLock { $0.format != nil } }
    public var openCount: Int { state.withLock { $0.openCount } }

    public func open(_ requested: CameraFormat) throws -> CameraFormat {
        var format = requested
        format.width = max(Self.minimumWidth, requested.width & ~1)
        format.height = max(32, requested.height & ~1)
        format.framesPerSecond = max(1, requested.framesPerSecond)
        closed.store(false, ordering: .releasing)
        state.withLock {
            $0.format = format
            $0.frameNumber = 0
            $0.start = nil
            $0.openCount += 1
        }
        return format
    }

    public func nextFrame() throws -> VideoFrame {
        let (format, number, deadline): (CameraFormat, Int, ContinuousClock.Instant?) = try state.withLock { state in
            guard let format = state.format else {
                throw DeviceError(.vanished, device: "test-pattern", detail: "camera is closed")
            }
            if let failAfter, state.frameNumber >= failAfter {
                throw DeviceError(.vanished, device: "test-pattern", detail: "camera vanished after \(failAfter) frames")
            }
            let number = state.frameNumber
            state.frameNumber += 1
            let start = state.start ?? ContinuousClock.now
            state.start = start
            let deadline = paced ? start + .seconds(Double(number) / Double(format.framesPerSecond)) : nil
            return (format, number, deadline)
        }
        if let deadline { syntheticSleepUntil(deadline, unlessSet: closed) }
        if closed.load(ordering: .acquiring) {
            throw DeviceError(.vanished, device: "test-pattern", detail: "camera closed")
        }
        let timestamp = Duration.seconds(Double(number) / Double(format.framesPerSecond))
        return Self.render(width: format.width, height: format.height, frameNumber: number, timestamp: timestamp)
    }

    public func close() {
        closed.store(true, ordering: .releasing)
        state.withLock { $0.format = nil }
    }

    // MARK: The picture

    static let minimumWidth = 128

    /// Bars in BT.601 limited range: white, yellow, cyan, green, magenta, red, blue, black.
    private static let bars: [(y: UInt8, u: UInt8, v: UInt8)] = [
        (235, 128, 128), (210, 16, 146), (170, 166, 16), (145, 54, 34),
        (106, 202, 222), (81, 90, 240), (41, 240, 110), (16, 128, 128),
    ]

    /// Side of one counter block in pixels.
    public static func counterBlockSize(width: Int) -> Int { max(8, (width / 32) & ~1) }

    public static func render(width: Int, height: Int, frameNumber: Int, timestamp: Duration) -> VideoFrame {
        // Build one row per plane and copy it down: per-pixel work only once per row, so the
        // pattern stays cheap at 640×480 (the benchmark measures the codecs, not this).
        let barWidth = max(2, width / bars.count)
        let shift = (frameNumber * 4) % width
        let chromaWidth = width / 2
        var lumaRow = [UInt8](repeating: 0, count: width)
        var uRow = [UInt8](repeating: 0, count: chromaWidth)
        var vRow = [UInt8](repeating: 0, count: chromaWidth)
        for x in 0..<width {
            let bar = bars[(((x + shift) % width) / barWidth) % bars.count]
            lumaRow[x] = bar.y
            if x % 2 == 0 {
                uRow[x / 2] = bar.u
                vRow[x / 2] = bar.v
            }
        }
        let block = counterBlockSize(width: width)
        let top = height - 2 * block
        let stripTop = top - block / 2
        let grey = [UInt8](repeating: 128, count: width)
        var planes = [UInt8]()
        planes.reserveCapacity(width * height * 3 / 2)
        for y in 0..<height { planes.append(contentsOf: y >= stripTop ? grey : lumaRow) }
        for y in 0..<(height / 2) { planes.append(contentsOf: y * 2 >= stripTop ? grey[0..<chromaWidth] : uRow[...]) }
        for y in 0..<(height / 2) { planes.append(contentsOf: y * 2 >= stripTop ? grey[0..<chromaWidth] : vRow[...]) }
        // Counter: one block per bit, most significant first.
        var counterRow = grey
        for bit in 0..<counterBits {
            let on = (frameNumber >> (counterBits - 1 - bit)) & 1 == 1
            let left = block / 2 + bit * block
            for x in left..<min(width, left + block) { counterRow[x] = on ? 235 : 16 }
        }
        for y in top..<min(height, top + block) {
            planes.replaceSubrange((y * width)..<((y + 1) * width), with: counterRow)
        }
        return VideoFrame(width: width, height: height, planes: planes, timestamp: timestamp)
    }

    /// Reads the frame number back from a (possibly decoded, lossy) test-pattern frame.
    public static func frameNumber(in frame: VideoFrame) -> Int {
        let block = counterBlockSize(width: frame.width)
        let top = frame.height - 2 * block
        var number = 0
        for bit in 0..<counterBits {
            let x = block / 2 + bit * block + block / 2
            let y = top + block / 2
            number = (number << 1) | (frame.planes[y * frame.width + x] > 128 ? 1 : 0)
        }
        return number
    }
}
