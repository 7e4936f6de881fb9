/// An off-screen picture in the connector's pixel format, XRGB8888: one `UInt32` per pixel,
/// `0x00RRGGBB`, rows top to bottom without padding. Everything the screen shows is drawn
/// into one of these first; the outputs (DRM, fbdev, off-screen) only copy it out.
public struct ScreenImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt32]

    public init(width: Int, height: Int, fill: UInt32 = 0) {
        precondition(width > 0 && height > 0, "an image needs a size")
        self.width = width
        self.height = height
        pixels = [UInt32](repeating: fill, count: width * height)
    }

    public init(width: Int, height: Int, pixels: [UInt32]) {
        precondition(pixels.count == width * height, "pixel count does not match the size")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    public subscript(x: Int, y: Int) -> UInt32 {
        get { pixels[y * width + x] }
        set { pixels[y * width + x] = newValue }
    }

    /// Fills a rectangle, clipped to the image.
    public mutating func fill(_ rect: Rect, with colour: UInt32) {
        let r = rect.clipped(width: width, height: height)
        guard !r.isEmpty else { return }
        let w = width
        pixels.withUnsafeMutableBufferPointer { p in
            for y in r.y..<(r.y + r.height) {
                let row = y * w
                for x in r.x..<(r.x + r.width) { p[row + x] = colour }
            }
        }
    }

    /// Fills a disc, antialiased at its edge (for the calling animation).
    public mutating func fillCircle(centreX: Double, centreY: Double, radius: Double, colour: UInt32) {
        let x0 = max(0, Int(centreX - radius - 1)), x1 = min(width - 1, Int(centreX + radius + 1))
        let y0 = max(0, Int(centreY - radius - 1)), y1 = min(height - 1, Int(centreY + radius + 1))
        guard x0 <= x1, y0 <= y1 else { return }
        for y in y0...y1 {
            for x in x0...x1 {
                let dx = Double(x) + 0.5 - centreX, dy = Double(y) + 0.5 - centreY
                let distance = (dx * dx + dy * dy).squareRoot()
                let coverage = min(1, max(0, radius - distance + 0.5))
                if coverage > 0 { self[x, y] = Colour.blend(colour, over: self[x, y], alpha: UInt32(coverage * 255)) }
            }
        }
    }

    /// Copies `source` with its top-left corner at (x, y), clipped.
    public mutating func draw(_ source: ScreenImage, atX x: Int, y: Int) {
        let target = Rect(x: x, y: y, width: source.width, height: source.height).clipped(width: width, height: height)
        guard !target.isEmpty else { return }
        let w = width
        pixels.withUnsafeMutableBufferPointer { dst in
            source.pixels.withUnsafeBufferPointer { src in
                for row in target.y..<(target.y + target.height) {
                    let srcRow = (row - y) * source.width + (target.x - x)
                    for column in 0..<target.width { dst[row * w + target.x + column] = src[srcRow + column] }
                }
            }
        }
    }

    /// Darkens every pixel to `percent` of its brightness (the dimmed idle screen).
    public mutating func dim(toPercent percent: Int) {
        let factor = UInt32(max(0, min(100, percent)) * 256 / 100)
        pixels.withUnsafeMutableBufferPointer { p in
            for i in p.indices {
                let v = p[i]
                // (Swift's >> binds tighter than *.)
                let r = (((v >> 16) & 0xFF) * factor) >> 8, g = (((v >> 8) & 0xFF) * factor) >> 8, b = ((v & 0xFF) * factor) >> 8
                p[i] = (r << 16) | (g << 8) | b
            }
        }
    }
}

/// A rectangle in pixels.
public struct Rect: Sendable, Equatable, CustomStringConvertible {
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int

    public init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }

    public var isEmpty: Bool { width <= 0 || height <= 0 }
    public var description: String { "\(width)×\(height)+\(x)+\(y)" }

    public func clipped(width limitW: Int, height limitH: Int) -> Rect {
        let x0 = max(0, x), y0 = max(0, y)
        let x1 = min(limitW, x + width), y1 = min(limitH, y + height)
        return Rect(x: x0, y: y0, width: max(0, x1 - x0), height: max(0, y1 - y0))
    }

    /// The largest rectangle with the aspect ratio `contentWidth:contentHeight` that fits
    /// centred inside this one (letterbox or pillarbox, never cropped or stretched).
    public func fitting(contentWidth: Int, contentHeight: Int) -> Rect {
        guard contentWidth > 0, contentHeight > 0, !isEmpty else { return Rect(x: x, y: y, width: 0, height: 0) }
        var w = width, h = width * contentHeight / contentWidth
        if h > height {
            h = height
            w = height * contentWidth / contentHeight
        }
        return Rect(x: x + (width - w) / 2, y: y + (height - h) / 2, width: w, height: h)
    }
}

/// The screen's few colours (0x00RRGGBB), chosen for contrast: white and yellow on near-black.
public enum Colour {
    public static let background: UInt32 = 0x10_14_1C
    public static let text: UInt32 = 0xFF_FF_FF
    public static let secondaryText: UInt32 = 0xD8_DE_E8
    public static let accent: UInt32 = 0xFF_D4_3B
    public static let warningBackground: UInt32 = 0x3A_1E_00
    public static let faultBackground: UInt32 = 0x4A_0A_0A
    public static let calm: UInt32 = 0x5A_B4_FF
    public static let selfViewBorder: UInt32 = 0xFF_FF_FF
    public static let black: UInt32 = 0

    /// `top` over `bottom` with `alpha` 0…255.
    @inline(__always)
    public static func blend(_ top: UInt32, over bottom: UInt32, alpha: UInt32) -> UInt32 {
        if alpha >= 255 { return top }
        if alpha == 0 { return bottom }
        let inverse = 255 - alpha
        let r = (((top >> 16) & 0xFF) * alpha + ((bottom >> 16) & 0xFF) * inverse) / 255
        let g = (((top >> 8) & 0xFF) * alpha + ((bottom >> 8) & 0xFF) * inverse) / 255
        let b = ((top & 0xFF) * alpha + (bottom & 0xFF) * inverse) / 255
        return (r << 16) | (g << 8) | b
    }
}
