// Text through FreeType: the only file that imports CFreeType.

private import CFreeType
import Synchronization

/// A font file could not be used.
public struct FontError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var detail: String
    public var description: String { "font \(path): \(detail)" }
}

/// A line of text rasterised to an 8-bit coverage mask, ready to be blended in any colour.
public struct TextMask: Sendable {
    public let width: Int
    public let height: Int
    /// Distance from the top of the mask to the baseline.
    public let ascent: Int
    public let coverage: [UInt8]
}

/// One TrueType face (DejaVu Sans by default, see `defaultPath`) rendered by FreeType with
/// its hinting and antialiasing. Lines are cached by text and size: the screen redraws the
/// same few sentences many times a second during the calling animation, and FreeType is
/// much slower than a blend.
///
/// FreeType faces are not thread-safe; every use goes through one mutex.
public final class FontRenderer: Sendable {
    /// Debian's `fonts-dejavu-core`: a wide-coverage sans with clear, open letter shapes
    /// (distinct I/l/1), free to ship, already on every Debian image.
    public static let defaultPath = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

    public let path: String
    private struct State: ~Copyable {
        var library: FT_Library
        var face: FT_Face
        var cache: [String: TextMask] = [:]
    }
    private let state: Mutex<State>
    private let layouts = Mutex<[String: [String]]>([:])

    public init(path: String = FontRenderer.defaultPath) throws(FontError) {
        self.path = path
        var library: FT_Library?
        guard FT_Init_FreeType(&library) == 0, let library else {
            throw FontError(path: path, detail: "FreeType did not initialise")
        }
        var face: FT_Face?
        let error = FT_New_Face(library, path, 0, &face)
        guard error == 0, let face else {
            FT_Done_FreeType(library)
            throw FontError(path: path, detail: error == 1 ? "cannot open the file" : "not a font FreeType can read (error \(error))")
        }
        state = Mutex(State(library: library, face: face))
    }

    deinit {
        state.withLock { state in
            FT_Done_Face(state.face)
            FT_Done_FreeType(state.library)
        }
    }

    /// The width in pixels `text` takes at `pixelSize`.
    public func measure(_ text: String, pixelSize: Int) -> Int {
        let key = "\(pixelSize)\u{0}\(text)"
        return state.withLock { state in
            if let cached = state.cache[key] { return cached.width }
            FT_Set_Pixel_Sizes(state.face, 0, FT_UInt(pixelSize))
            return Self.advance(of: Array(text.unicodeScalars), face: state.face) + 2
        }
    }

    /// Rasterises one line (no wrapping; see `wrap`).
    public func render(_ text: String, pixelSize: Int) -> TextMask {
        let key = "\(pixelSize)\u{0}\(text)"
        return state.withLock { state in
            if let cached = state.cache[key] { return cached }
            let mask = Self.rasterise(text, pixelSize: pixelSize, face: state.face)
            if state.cache.count > 256 { state.cache.removeAll() }
            state.cache[key] = mask
            return mask
        }
    }

    /// Splits `text` at spaces into lines no wider than `maxWidth` (a single word wider than
    /// that gets a line of its own), balanced so that a sentence over two lines does not
    /// leave one word alone on the second.
    public func wrap(_ text: String, pixelSize: Int, maxWidth: Int) -> [String] {
        let key = "\(pixelSize)\u{0}\(maxWidth)\u{0}\(text)"
        if let cached = layouts.withLock({ $0[key] }) { return cached }
        var lines = greedyWrap(text, pixelSize: pixelSize, maxWidth: maxWidth)
        if lines.count > 1 {
            // The narrowest width that still needs no more lines.
            var low = maxWidth / 3, high = maxWidth
            while low < high {
                let middle = (low + high) / 2
                if greedyWrap(text, pixelSize: pixelSize, maxWidth: middle).count <= lines.count { high = middle } else { low = middle + 1 }
            }
            lines = greedyWrap(text, pixelSize: pixelSize, maxWidth: high)
        }
        layouts.withLock { layouts in
            if layouts.count > 64 { layouts.removeAll() }
            layouts[key] = lines
        }
        return lines
    }

    private func greedyWrap(_ text: String, pixelSize: Int, maxWidth: Int) -> [String] {
        var lines: [String] = []
        var current = ""
        for word in text.split(separator: " ") {
            let candidate = current.isEmpty ? String(word) : current + " " + word
            if current.isEmpty || measure(candidate, pixelSize: pixelSize) <= maxWidth {
                current = candidate
            } else {
                lines.append(current)
                current = String(word)
            }
        }
        if !current.isEmpty { lines.append(current) }
        return lines
    }

    private static func kerning(_ face: FT_Face, _ left: FT_UInt, _ right: FT_UInt) -> Int {
        guard (face.pointee.face_flags & FT_Long(FT_FACE_FLAG_KERNING)) != 0, left != 0, right != 0 else { return 0 }
        var delta = FT_Vector()
        FT_Get_Kerning(face, left, right, UInt32(FT_KERNING_DEFAULT.rawValue), &delta)
        return Int(delta.x >> 6)
    }

    /// The pen advance of a line in pixels (no rasterising).
    private static func advance(of scalars: [Unicode.Scalar], face: FT_Face) -> Int {
        var width = 0
        var previous: FT_UInt = 0
        for scalar in scalars {
            let index = FT_Get_Char_Index(face, FT_ULong(scalar.value))
            width += kerning(face, previous, index)
            if FT_Load_Glyph(face, index, Int32(cft_load_default())) == 0 {
                width += Int(face.pointee.glyph.pointee.advance.x >> 6)
            }
            previous = index
        }
        return width
    }

    private static func rasterise(_ text: String, pixelSize: Int, face: FT_Face) -> TextMask {
        FT_Set_Pixel_Sizes(face, 0, FT_UInt(pixelSize))
        let metrics = face.pointee.size.pointee.metrics
        let ascent = Int(metrics.ascender >> 6)
        let height = max(1, Int((metrics.ascender - metrics.descender) >> 6))
        let scalars = Array(text.unicodeScalars)
        var width = advance(of: scalars, face: face)
        width = max(1, width + 2)
        var coverage = [UInt8](repeating: 0, count: width * height)
        var penX = 1
        var previous: FT_UInt = 0
        for scalar in scalars {
            let index = FT_Get_Char_Index(face, FT_ULong(scalar.value))
            penX += kerning(face, previous, index)
            previous = index
            guard FT_Load_Glyph(face, index, Int32(cft_load_render())) == 0 else { continue }
            let glyph = face.pointee.glyph.pointee
            let bitmap = glyph.bitmap
            let left = penX + Int(glyph.bitmap_left)
            let top = ascent - Int(glyph.bitmap_top)
            if let buffer = bitmap.buffer {
                for row in 0..<Int(bitmap.rows) {
                    let y = top + row
                    guard y >= 0 && y < height else { continue }
                    for column in 0..<Int(bitmap.width) {
                        let x = left + column
                        guard x >= 0 && x < width else { continue }
                        let value = buffer[row * Int(bitmap.pitch) + column]
                        let i = y * width + x
                        coverage[i] = max(coverage[i], value)
                    }
                }
            }
            penX += Int(glyph.advance.x >> 6)
        }
        return TextMask(width: width, height: height, ascent: ascent, coverage: coverage)
    }
}

extension ScreenImage {
    /// Blends a text mask in `colour` with its top-left corner at (x, y), clipped.
    public mutating func draw(_ mask: TextMask, atX x: Int, y: Int, colour: UInt32) {
        let target = Rect(x: x, y: y, width: mask.width, height: mask.height).clipped(width: width, height: height)
        guard !target.isEmpty else { return }
        let w = width
        pixels.withUnsafeMutableBufferPointer { dst in
            mask.coverage.withUnsafeBufferPointer { src in
                for row in target.y..<(target.y + target.height) {
                    let srcRow = (row - y) * mask.width - x
                    for column in target.x..<(target.x + target.width) {
                        let alpha = UInt32(src[srcRow + column])
                        if alpha != 0 {
                            dst[row * w + column] = Colour.blend(colour, over: dst[row * w + column], alpha: alpha)
                        }
                    }
                }
            }
        }
    }
}
