public import Foundation

/// The answer to `screenshot`: the picture on the screen now, PNG-encoded. Base64 in the
/// JSON line; a 1280×800 screen is a few hundred kB, well inside the client's 4 MB answer
/// limit (the daemon refuses rather than send more than `maximumPNGBytes`).
public struct ScreenshotResult: Codable, Sendable, Equatable {
    public static let maximumPNGBytes = 3 * 1024 * 1024 - 64 * 1024

    public var width: Int
    public var height: Int
    /// Which output the picture was drawn for ("DRM /dev/dri/card0 …", "off-screen 1280×800").
    public var output: String
    /// The call phase when it was taken.
    public var phase: String
    public var png: String

    public init(width: Int, height: Int, output: String, phase: String, png: Data) {
        self.width = width
        self.height = height
        self.output = output
        self.phase = phase
        self.png = png.base64EncodedString()
    }

    public var pngData: Data? { Data(base64Encoded: png) }
}
