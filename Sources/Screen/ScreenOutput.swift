import Synchronization

/// Where rendered pictures go: the panel through DRM/KMS, the Linux framebuffer, or only
/// memory (tests, the demo without a display, and the source of every screenshot).
public protocol ScreenOutput: AnyObject, Sendable {
    /// The panel's size; pictures are rendered at exactly this size.
    var width: Int { get }
    var height: Int { get }
    /// A sentence for logs and `status`: which device, which mode.
    var description: String { get }
    /// Shows `image` (of `width`×`height`). Called from the screen's own thread only.
    func present(_ image: ScreenImage) throws(ScreenOutputError)
    /// Gives the display back (restores the previous CRTC); idempotent.
    func close()
}

/// A display device could not be used; names the device and what went wrong.
public struct ScreenOutputError: Error, Sendable, Equatable, CustomStringConvertible {
    public var device: String
    public var detail: String

    public init(device: String, detail: String) {
        self.device = device
        self.detail = detail
    }

    public var description: String { "\(device): \(detail)" }
}

/// Keeps the last picture in memory and nothing else.
public final class OffscreenOutput: ScreenOutput {
    public let width: Int
    public let height: Int
    private let last = Mutex<ScreenImage?>(nil)

    public init(width: Int = 1280, height: Int = 800) {
        self.width = width
        self.height = height
    }

    public var description: String { "off-screen \(width)×\(height)" }

    public func present(_ image: ScreenImage) throws(ScreenOutputError) {
        last.withLock { $0 = image }
    }

    public var lastImage: ScreenImage? { last.withLock { $0 } }

    public func close() {}
}
